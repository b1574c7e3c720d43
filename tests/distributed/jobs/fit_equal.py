"""Run under `mpiexec -n 2`: fit(distributed=True) leaves bitwise-identical parameters
on every rank and matches one process trained on the global batches (within float
rounding); with Dropout, masks differ per rank and parameters still agree; a model
with two outputs trains as in one process; only rank 0 writes checkpoints and the
training report."""
import os
import shutil
import sys
import tempfile

import numpy as np

import nngraph as ng
from nngraph import distributed

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from two_outputs import two_output_model  # noqa: E402  (tests/two_outputs.py)


def make_model(dropout: float, target: str):
    ng.nn.set_seed(3)
    L = ng.nn
    layers = [L.Dense(16), L.BatchNorm(), L.Dense(16, activation="relu")]
    layers += [L.Dropout(dropout)] if dropout else []
    model = L.Sequential(layers + [L.Dense(3)], input_shape=(5,))
    model.compile(ng.optim.SGD(0.1, momentum=0.9), "cross_entropy", ["accuracy"], target=target)
    return model


def gathered(model):
    return distributed.mpi().COMM_WORLD.allgather([p.value.copy() for p in model.params])


def main(target: str):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int32) + (X[:, 2] > 1).astype(np.int32)
    val = (X[:30], y[:30])
    dp = make_model(0.0, target)
    hist = dp.fit(X, y, epochs=3, batch_size=20, validation_data=val, distributed=True, verbose=0)
    ranks = gathered(dp)
    for a, b in zip(ranks[0], ranks[1]):
        assert np.array_equal(a, b), "parameters differ between ranks"
    one = make_model(0.0, target)
    ref = one.fit(X, y, epochs=3, batch_size=20, validation_data=val, verbose=0)
    for p, q in zip(dp.params, one.params):
        np.testing.assert_allclose(p.value, q.value, rtol=2e-4, atol=2e-5, err_msg=p.name)
    for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(hist[k], ref[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert abs(dp.evaluate(X, y)["accuracy"] - one.evaluate(X, y)["accuracy"]) < 1e-6
    # dropout: different masks per rank (the step's graphs differ in their seeds), same parameters
    drop = make_model(0.5, target)
    drop.fit(X, y, epochs=1, batch_size=20, distributed=True, verbose=0)
    ranks = gathered(drop)
    for a, b in zip(ranks[0], ranks[1]):
        assert np.array_equal(a, b), "parameters differ between ranks (dropout)"
    step = next(fn for key, fn in drop._fns.items() if key[0] == "train_distributed")
    seeds = [n.attrs["seed"] for n in step.graph.nodes() if n.op == "uniform"]
    all_seeds = distributed.mpi().COMM_WORLD.allgather(seeds)
    assert all_seeds[0] != all_seeds[1], all_seeds
    two_outputs(X, y, target)
    only_rank_zero_writes(X, y, target)
    print(f"rank {distributed.rank()}: ok ({target})", flush=True)


def two_outputs(X, y, target: str):
    targets = {"cls": y, "reg": X[:, :1] - X[:, 3:4]}
    val = (X[:25], {"cls": y[:25], "reg": targets["reg"][:25]})
    dp, one = two_output_model(5, target), two_output_model(5, target)
    hist = dp.fit(X, targets, epochs=2, batch_size=15, validation_data=val, distributed=True, verbose=0)
    ref = one.fit(X, targets, epochs=2, batch_size=15, validation_data=val, verbose=0)
    for a, b in zip(*gathered(dp)):
        assert np.array_equal(a, b), "parameters differ between ranks (two outputs)"
    for p, q in zip(dp.params, one.params):
        np.testing.assert_allclose(p.value, q.value, rtol=2e-4, atol=2e-5, err_msg=p.name)
    assert hist.keys() == ref.keys() and "val_reg_loss" in hist
    for k in hist:
        np.testing.assert_allclose(hist[k], ref[k], rtol=1e-4, atol=1e-5, err_msg=k)


def only_rank_zero_writes(X, y, target: str):
    folder = tempfile.mkdtemp(prefix=f"nngraph-rank{distributed.rank()}-")
    model = make_model(0.0, target)
    model.fit(X, y, epochs=1, batch_size=20, distributed=True, verbose=0,
              report=os.path.join(folder, "report.html"),
              callbacks=[ng.nn.ModelCheckpoint(os.path.join(folder, "ckpt.npz"), save_best_only=False)])
    written = sorted(os.listdir(folder))
    want = ["ckpt.npz", "report.html"] if distributed.is_main() else []
    shutil.rmtree(folder)
    assert written == want, (distributed.rank(), written)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
