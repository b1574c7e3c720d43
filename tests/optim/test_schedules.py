"""Learning-rate schedules: the course's formulas, and the rate set per step/epoch
through the lr parameter (no recompile)."""
import numpy as np
import pytest

import nngraph as ng


def test_formulas():
    s = ng.optim.StepDecay(0.1, factor=0.5, every=3)
    assert [s(t) for t in range(7)] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])
    e = ng.optim.ExponentialDecay(0.2, s=10)
    assert e(0) == pytest.approx(0.2) and e(10) == pytest.approx(0.02) and e(5) == pytest.approx(0.2 * 0.1 ** 0.5)
    p = ng.optim.PowerDecay(0.3, s=4)
    assert p(4) == pytest.approx(0.15) and p(8) == pytest.approx(0.1)


def test_one_cycle_up_down_then_drop():
    oc = ng.optim.OneCycle(1.0, total_steps=100, final_fraction=0.1)  # initial 0.1, final 1e-4
    assert oc(0) == pytest.approx(0.1)
    assert oc(44) == pytest.approx(1.0)                     # peak at step 0.45 T - 1
    assert oc(22) == pytest.approx(0.55)                    # linear on the way up
    assert oc(88) == pytest.approx(0.1)                     # back to the start at 0.9 T - 2
    assert oc(99) == pytest.approx(1e-4)                    # the last step runs at the final rate
    assert oc.momentum(0) == pytest.approx(0.95) and oc.momentum(44) == pytest.approx(0.85)
    assert oc.momentum(88) == pytest.approx(0.95) and oc.momentum(99) == pytest.approx(0.95)


@pytest.mark.parametrize("total, final_fraction", [(100, 0.1), (37, 0.2), (8, 0.0)])
def test_one_cycle_matches_torch_lr_and_momentum_at_every_step(total, final_fraction):
    """PyTorch's OneCycleLR(three_phase=True, linear) step for step, momentum included."""
    torch = pytest.importorskip("torch")
    oc = ng.optim.OneCycle(2.0, total_steps=total, final_fraction=final_fraction)
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=2.0, total_steps=total, pct_start=(1 - final_fraction) / 2, anneal_strategy="linear",
        div_factor=10.0, final_div_factor=1000.0, three_phase=True, base_momentum=0.85, max_momentum=0.95)
    for t in range(total):
        group = opt.param_groups[0]
        assert oc(t) == pytest.approx(group["lr"], rel=1e-9, abs=1e-12), t
        assert oc.momentum(t) == pytest.approx(group["momentum"], rel=1e-9), t
        opt.step()
        sched.step()


def _data():
    X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int32)


def _spy(seen, read):
    class Spy(ng.nn.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(read(self.model.optimizer))
    return Spy()


def test_sgd_with_one_cycle_cycles_its_momentum():
    X, y = _data()
    seen = []
    model = ng.nn.Sequential([ng.nn.Dense(2)], input_shape=(3,))
    model.compile(ng.optim.SGD(ng.optim.OneCycle(0.5, final_fraction=0.0), momentum=0.9), target="reference")
    model.fit(X, y, epochs=2, batch_size=5, verbose=0,               # 8 steps
              callbacks=[_spy(seen, lambda opt: float(opt.momentum_param.value))])
    assert seen[0] == pytest.approx(0.95) and seen[3] == pytest.approx(0.85) and seen[-1] == pytest.approx(0.95)


def test_fit_sets_lr_per_epoch_and_per_step():
    X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int32)
    seen = []

    class Spy(ng.nn.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(float(self.model.optimizer.lr.value))

    model = ng.nn.Sequential([ng.nn.Dense(2)], input_shape=(3,))
    model.compile(ng.optim.SGD(ng.optim.StepDecay(0.1, 0.5, every=1)), target="reference")
    model.fit(X, y, epochs=3, batch_size=10, verbose=0, callbacks=[Spy()])
    assert seen == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    n_fns = len(model._fns)
    seen.clear()
    model.compile(ng.optim.Adam(ng.optim.OneCycle(0.5, final_fraction=0.0)), target="reference")
    model.fit(X, y, epochs=2, batch_size=5, verbose=0, callbacks=[Spy()])  # 8 steps: total filled in
    assert seen[0] == pytest.approx(0.05) and seen[3] == pytest.approx(0.5) and seen[-1] == pytest.approx(5e-5)
    assert n_fns == 1


def test_learning_rate_scheduler_callback():
    X = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    y = np.zeros(8, np.int32)
    model = ng.nn.Sequential([ng.nn.Dense(2)], input_shape=(3,))
    model.compile(ng.optim.SGD(0.1), target="reference")
    model.fit(X, y, epochs=3, batch_size=8, verbose=0,
              callbacks=[ng.nn.LearningRateScheduler(lambda epoch, lr: lr * 0.5)])
    assert float(model.optimizer.lr.value) == pytest.approx(0.1 * 0.5 ** 3)
