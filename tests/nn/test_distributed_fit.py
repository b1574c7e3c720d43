"""fit(distributed=True) in one process (the two-process runs are in tests/distributed/):
the same training as fit(), sharding, per-rank dropout seeds, synced batch statistics."""
import numpy as np
import pytest

import nngraph as ng
from nngraph.nn import replica
from nngraph.nn.distributed_fit import shard, train_step
from two_outputs import two_output_model


def _model():
    # SGD, not Adam: a bias before BatchNorm has a zero gradient up to rounding, which
    # Adam scales to full steps, so two correct summation orders would drift apart
    ng.nn.set_seed(7)
    L = ng.nn
    model = L.Sequential([L.Dense(12), L.BatchNorm(), L.Dense(12, activation="relu"), L.Dense(3)],
                         input_shape=(4,))
    model.compile(ng.optim.SGD(0.05, momentum=0.9), "cross_entropy", ["accuracy"], target="cpu")
    return model


def _data():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 4)).astype(np.float32)
    return X, (X[:, 0] > X[:, 1]).astype(np.int32) + (X[:, 2] > 0.5).astype(np.int32)


def test_fit_distributed_in_one_process_trains_as_fit():
    X, y = _data()
    a, b = _model(), _model()
    ha = a.fit(X, y, epochs=2, batch_size=16, validation_data=(X[:10], y[:10]), distributed=True, verbose=0)
    hb = b.fit(X, y, epochs=2, batch_size=16, validation_data=(X[:10], y[:10]), verbose=0)
    _assert_same_training(a, b, ha, hb)


def test_training_step_reduces_gradients_statistics_and_scores():
    X, y = _data()
    model = _model()
    step = train_step(model)
    graph = step.graph
    reduced = [n for n in graph.nodes() if n.op == "all_reduce"]
    # 5 trainable weights + 2 batch-norm statistics (and their vjps) + loss and accuracy
    assert len(reduced) >= 6 + 2 + 2
    assert [ph.name for ph in step.inputs][-1] == "shard_weight"
    assert step.stats()["all_reduce"]["calls"] >= 2      # the variance needs the mean: a later call
    loss, acc = step(X[:16], y[:16], np.float32(1.0))
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0


@pytest.mark.parametrize("size,ranks", [(32, 2), (33, 2), (7, 3), (5, 5)])
def test_shards_cover_the_batch_and_differ_by_at_most_one(size, ranks):
    idx = np.arange(size) * 3
    parts = [shard(idx, r, ranks) for r in range(ranks)]
    np.testing.assert_array_equal(np.concatenate(parts), idx)
    lengths = [len(p) for p in parts]
    assert max(lengths) - min(lengths) <= 1


def test_dropout_seed_differs_per_rank_only_in_a_data_parallel_build():
    w = ng.placeholder((), name="w")
    assert replica.seed(5) == 5 and replica.seed(None) is None
    with replica.building(0, 2, w):
        s0 = replica.seed(5)
    with replica.building(1, 2, w):
        s1 = replica.seed(5)
    assert s0 != s1


def test_synced_moments_weight_the_shares():
    # one process, weight 1: the same statistics as ng.moments, count as given
    x = ng.placeholder((6, 3), name="x")
    w = ng.placeholder((), name="w")
    with replica.building(0, 1, w):
        m, v, n = replica.moments(x, (0,))
    fn = ng.compile([x, w], [m, v, n], target="cpu")
    a = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    got_m, got_v, got_n = fn(a, np.float32(1.0))
    np.testing.assert_allclose(got_m, a.mean(0), rtol=1e-6)
    np.testing.assert_allclose(got_v, a.var(0), rtol=1e-5)
    assert float(got_n) == 6.0


def _assert_same_training(a, b, ha, hb):
    assert ha.keys() == hb.keys()
    for k in ha:
        np.testing.assert_allclose(ha[k], hb[k], rtol=1e-6, err_msg=k)
    for p, q in zip(a.params, b.params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-5, atol=1e-6, err_msg=p.name)


def test_fit_distributed_trains_a_model_with_two_outputs_as_fit():
    X, y = _data()
    targets = {"cls": y, "reg": X[:, :1] * 2.0}
    val = (X[:10], {"cls": y[:10], "reg": targets["reg"][:10]})
    a, b = two_output_model(4), two_output_model(4)
    ha = a.fit(X, targets, epochs=2, batch_size=16, validation_data=val, distributed=True, verbose=0)
    hb = b.fit(X, targets, epochs=2, batch_size=16, validation_data=val, verbose=0)
    assert "reg_loss" in ha and "val_cls_accuracy" in ha
    _assert_same_training(a, b, ha, hb)


class _Batches:
    """An iterable of (x, y) batches that starts again each epoch (as a data loader)."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


class _Net(ng.nn.Module):
    """Built from its first data: parameters exist only once the step is compiled."""

    def __init__(self):
        super().__init__()
        self.hidden, self.out = ng.nn.Dense(8, activation="relu", seed=1), ng.nn.Dense(3, seed=2)

    def forward(self, x, training=False):
        return self.out(self.hidden(x))


def test_fit_distributed_on_a_module_with_batches_and_validation_split_trains_as_fit():
    X, y = _data()
    batches = _Batches([(X[s:s + 10], y[s:s + 10]) for s in range(0, 50, 10)])
    models, hists = [], []
    for distributed in (True, False):
        net = _Net()
        net.compile(ng.optim.SGD(0.1), "cross_entropy", ["accuracy"], target="cpu")
        h1 = net.fit(X, y, epochs=1, batch_size=8, validation_split=0.2, distributed=distributed, verbose=0)
        h2 = net.fit(batches, epochs=2, validation_data=_Batches(batches.items[:2]), distributed=distributed,
                     verbose=0)
        models.append(net)
        hists.append({**h1, **{f"split_{k}": v for k, v in h2.items()}})
    _assert_same_training(*models, *hists)


def test_fit_distributed_prints_as_fit_on_rank_zero(capsys):
    X, y = _data()
    _model().fit(X, y, epochs=1, batch_size=16, distributed=True, verbose=2)
    assert "epoch 1/1" in capsys.readouterr().out


def test_fit_distributed_report_shows_the_data_parallel_step(tmp_path):
    X, y = _data()
    _model().fit(X, y, epochs=1, batch_size=16, distributed=True, verbose=0, report=str(tmp_path / "r.html"))
    html = (tmp_path / "r.html").read_text()
    assert "Training step: Kernels" in html and "all_reduce" in html
