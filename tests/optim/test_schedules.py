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
    assert oc(45) == pytest.approx(1.0)                     # peak halfway through the cycle (90 steps)
    assert oc(22.5) == pytest.approx(0.55)                  # linear on the way up
    assert oc(90) == pytest.approx(0.1)                     # back to the start
    assert oc(100) == pytest.approx(1e-4)                   # dropped by three orders of magnitude
    assert oc(95) == pytest.approx(0.1 + (1e-4 - 0.1) * 0.5)


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
    assert seen[0] == pytest.approx(0.05) and seen[4] == pytest.approx(0.5) and seen[-1] < 0.5
    assert n_fns == 1


def test_learning_rate_scheduler_callback():
    X = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    y = np.zeros(8, np.int32)
    model = ng.nn.Sequential([ng.nn.Dense(2)], input_shape=(3,))
    model.compile(ng.optim.SGD(0.1), target="reference")
    model.fit(X, y, epochs=3, batch_size=8, verbose=0,
              callbacks=[ng.nn.LearningRateScheduler(lambda epoch, lr: lr * 0.5)])
    assert float(model.optimizer.lr.value) == pytest.approx(0.1 * 0.5 ** 3)
