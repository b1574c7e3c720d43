"""Run under `mpiexec -n 2`: fit(distributed=True) leaves bitwise-identical parameters
on every rank and matches one process trained on the global batches (within float
rounding); with Dropout, masks differ per rank and parameters still agree."""
import sys

import numpy as np

import nngraph as ng
from nngraph import distributed


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
    step = drop._fns[("train_distributed", ("int", 1))]
    seeds = [n.attrs["seed"] for n in step.graph.nodes() if n.op == "uniform"]
    all_seeds = distributed.mpi().COMM_WORLD.allgather(seeds)
    assert all_seeds[0] != all_seeds[1], all_seeds
    print(f"rank {distributed.rank()}: ok ({target})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
