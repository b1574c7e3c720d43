"""The CPU runner reuses last call's output/update arrays only when nobody else
holds them: an output the caller keeps is never overwritten by the next call."""
import numpy as np

import nngraph as ng


def _fn():
    x = ng.placeholder(("N", 5), name="x")
    w = ng.parameter(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32), name="w")
    y = ng.tanh(x @ w)
    loss = (y * y).sum()
    (g,) = ng.grad(loss, [w])
    return ng.compile([x], [y, loss], updates={w: w - 0.1 * g}, target="cpu"), w


def test_kept_outputs_and_old_parameter_values_are_not_overwritten():
    fn, w = _fn()
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(3)]
    w0 = w.value                     # the caller keeps the old parameter array
    w0_copy = w0.copy()
    kept = [fn(x) for x in xs]       # and every output
    np.testing.assert_array_equal(w0, w0_copy)
    wv = w0_copy.astype(np.float64)
    for x, (y, loss) in zip(xs, kept):
        want = np.tanh(x.astype(np.float64) @ wv)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(loss, (want * want).sum(), rtol=1e-5)
        wv = wv - 0.1 * (x.T.astype(np.float64) @ (2 * want * (1 - want * want)))
    np.testing.assert_allclose(w.value, wv, rtol=1e-4, atol=1e-5)


def test_dropped_outputs_are_recycled_and_results_stay_right():
    fn, w = _fn()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    addrs = set()
    for _ in range(4):
        w_before = w.value.astype(np.float64)
        y, _ = fn(x)
        np.testing.assert_allclose(y, np.tanh(x.astype(np.float64) @ w_before), rtol=1e-5, atol=1e-6)
        addrs.add(y.ctypes.data)
        del y
    assert len(addrs) < 4            # a dropped output array was written again
    y2, _ = fn(x[:2].copy())         # other sizes: a fresh array of the right shape
    assert y2.shape == (2, 3)
