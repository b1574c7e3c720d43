"""Gradients of stabilised forms are the stable form's gradients: finite wherever
the value is (issue 11 item 6), on every target."""
import numpy as np

import nngraph as ng

import helpers


def _value_and_grad(target, loss, wrt):
    f = helpers.compile([], [loss, ng.grad(loss, wrt)], target=target)
    return f()


def test_binary_cross_entropy_at_probabilities_zero_and_one(target):
    P = ng.parameter(np.array([0.0, 1.0, 0.5, 1e-30], np.float32), name="P")
    t = np.array([0, 1, 1, 0], np.float32)
    value, grad = _value_and_grad(target, ng.binary_cross_entropy(P, t), P)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # d/dp of mean(-t max(log p, -100) - (1 - t) max(log(1 - p), -100)): no 0 * inf
    np.testing.assert_allclose(grad, np.array([1.0, -1.0, -2.0, 1.0]) / 4, rtol=1e-6)
    np.testing.assert_allclose(value, np.log(2) / 4, rtol=1e-6)


def test_binary_cross_entropy_clamps_at_minus_100(target):
    P = ng.parameter(np.array([0.0, 1.0], np.float32), name="P")
    value, grad = _value_and_grad(target, ng.binary_cross_entropy(P, np.array([1, 0], np.float32)), P)
    np.testing.assert_allclose(value, 100.0, rtol=1e-6)       # as PyTorch: each log clamped at -100
    np.testing.assert_array_equal(grad, 0.0)


def test_hand_written_log_sum_exp_has_a_finite_gradient(target):
    z = ng.parameter(np.array([[1e4, -1e4, 3.0], [-1e4, -1e4 + 1, -1e4]], np.float32), name="z")
    value, grad = _value_and_grad(target, ng.sum(ng.log(ng.sum(ng.exp(z), axis=1))), z)
    zz = z.value.astype(np.float64)
    m = zz.max(axis=1, keepdims=True)
    e = np.exp(zz - m)
    np.testing.assert_allclose(value, np.sum(m[:, 0] + np.log(e.sum(axis=1))), atol=4e-3)  # f32 ulp at 1e4
    np.testing.assert_allclose(grad, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_sigmoid_times_one_is_still_seen_as_a_sigmoid(target):
    z = ng.parameter(np.array([1e4, -1e4, 3.0], np.float32), name="z")
    t = np.array([1, 0, 1], np.float32)
    value, grad = _value_and_grad(target, ng.binary_cross_entropy(ng.sigmoid(z) * 1.0, t), z)
    s = 1 / (1 + np.exp(-3.0))
    np.testing.assert_allclose(value, -np.log(s) / 3, rtol=1e-5)
    np.testing.assert_allclose(grad, np.array([0.0, 0.0, (s - 1) / 3]), rtol=1e-5, atol=1e-7)
