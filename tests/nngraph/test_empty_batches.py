"""A batch of 0 examples (a dynamic size bound to 0) between batches of 1 and more,
through one compiled function, on every target (the graph interpreter included):
convolution gradients, the gradient of a take, an argmax over the features."""
import numpy as np

import nngraph as ng

import helpers


def _conv_grads():
    x = ng.placeholder(("N", 3, 6, 5), name="x")
    w = ng.placeholder((4, 3, 3, 3), name="w")
    r = ng.placeholder(("N", 4, 3, 3), name="r")
    y = ng.relu(ng.conv2d(x, w, stride=2, padding=1) + r)
    gx, gw = ng.grad(ng.sum(y * y), [x, w])
    return [x, w, r], [gx, gw]


def _expected(X, Wt, R):
    """NumPy: y = relu(conv(x, w) + r); d sum(y^2) / dx, dw by direct loops."""
    N, C, H, W = X.shape
    O, _, KH, KW = Wt.shape
    xp = np.pad(X, ((0, 0), (0, 0), (1, 1), (1, 1)))
    gxp, gw = np.zeros_like(xp), np.zeros_like(Wt)
    for n in range(N):
        for o in range(O):
            for i in range(3):
                for j in range(3):
                    patch = xp[n, :, 2 * i:2 * i + KH, 2 * j:2 * j + KW]
                    z = float(np.sum(patch * Wt[o])) + R[n, o, i, j]
                    g = 2.0 * max(z, 0.0)
                    gxp[n, :, 2 * i:2 * i + KH, 2 * j:2 * j + KW] += g * Wt[o]
                    gw[o] += g * patch
    return gxp[:, :, 1:1 + H, 1:1 + W], gw


def test_conv_gradients_of_an_empty_batch_between_others(target):
    rng = np.random.default_rng(0)
    fn = helpers.compile(*_conv_grads(), target=target)
    Wt = rng.standard_normal((4, 3, 3, 3))
    for n in (2, 0, 1, 0):
        X, R = rng.standard_normal((n, 3, 6, 5)), rng.standard_normal((n, 4, 3, 3))
        gx, gw = fn(X.astype(np.float32), Wt.astype(np.float32), R.astype(np.float32))
        want_gx, want_gw = _expected(X, Wt, R)
        assert gx.shape == (n, 3, 6, 5)
        np.testing.assert_allclose(gx, want_gx, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gw, want_gw, rtol=1e-4, atol=1e-4)


def test_gradient_of_a_take_along_features_for_an_empty_batch(target):
    """take along axis 1 of an [N, 5] batch: its gradient (a scatter-add) for N = 0."""
    x = ng.placeholder(("N", 5), name="x")
    ids = ng.placeholder((3,), "int32", name="ids")
    y = ng.take(x, ids, axis=1)
    fn = helpers.compile([x, ids], [y, ng.grad(ng.sum(y * y), x)], target=target)
    rng = np.random.default_rng(1)
    for n in (2, 0, 1):
        X = rng.standard_normal((n, 5)).astype(np.float32)
        y_val, gx = fn(X, np.array([0, 2, 2], np.int32))
        want = np.zeros((n, 5), np.float32)
        np.add.at(want, (slice(None), [0, 2, 2]), 2 * X[:, [0, 2, 2]])
        assert y_val.shape == (n, 3) and gx.shape == (n, 5)
        np.testing.assert_allclose(gx, want, rtol=1e-6)


def test_argmax_over_the_features_of_an_empty_batch(target):
    x = ng.placeholder(("N", 5), name="x")
    fn = helpers.compile([x], [ng.argmax(x, axis=1), ng.max(x, axis=1)], target=target)
    rng = np.random.default_rng(2)
    for n in (2, 0, 1):
        X = rng.standard_normal((n, 5)).astype(np.float32)
        arg, top = fn(X)
        assert arg.shape == (n,) and top.shape == (n,)
        np.testing.assert_array_equal(arg, np.argmax(X, axis=1))
        np.testing.assert_array_equal(top, np.max(X, axis=1))
