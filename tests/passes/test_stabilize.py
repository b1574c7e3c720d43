"""Numerical stabilisation: each rule as text, then the requirement itself: values
and gradients of softmax, log_softmax, cross_entropy, BCE-from-logits and
log(sigmoid(x)) finite at |x| = 1e4 and equal to float64 references, compiled
at opt_level 2 on the reference target."""
import numpy as np
import pytest
from scipy.special import expit, log_expit, log_softmax as np_log_softmax, logsumexp as np_logsumexp
from scipy.special import softmax as np_softmax

import nngraph as ng
import helpers
from ir_check import check, ir, unchanged
from passes.pipeline import stabilize_pass

BIG = np.array([[1e4, -1e4, 0.0, 5.0],
                [-1e4, -1e4, 3.0, 1e4],
                [0.5, -0.25, 1.0, -2.0],
                [-3e4, 2e4, 2e4, -1.0]], np.float32)


# ----------------------------------------------------------------------------- rules as text


def test_log_of_sigmoid_is_minus_softplus_of_minus_x():
    check(stabilize_pass, """
        func @main(%x: f32[N]) {
          %0 = sigmoid %x : f32[N]
          %1 = log %0 : f32[N]
          return %1
        }""", """
        func @main(%x: f32[N]) {
          %0 = neg %x : f32[N]
          %1 = softplus %0 : f32[N]
          %2 = neg %1 : f32[N]
          return %2
        }""", fired="log_sigmoid", low=-5, high=5)


def test_log_of_one_minus_sigmoid_is_minus_softplus():
    check(stabilize_pass, """
        func @main(%x: f32[N]) {
          %0 = sigmoid %x : f32[N]
          %1 = constant 1.0 : f32[]
          %2 = sub %1, %0 : f32[N]
          %3 = log %2 : f32[N]
          return %3
        }""", """
        func @main(%x: f32[N]) {
          %0 = softplus %x : f32[N]
          %1 = neg %0 : f32[N]
          return %1
        }""", fired="log_one_minus_sigmoid", low=-5, high=5)


def test_log1p_of_minus_sigmoid_is_minus_softplus():
    check(stabilize_pass, """
        func @main(%x: f32[N]) {
          %0 = sigmoid %x : f32[N]
          %1 = neg %0 : f32[N]
          %2 = log1p %1 : f32[N]
          return %2
        }""", """
        func @main(%x: f32[N]) {
          %0 = softplus %x : f32[N]
          %1 = neg %0 : f32[N]
          return %1
        }""", fired="log_one_minus_sigmoid", low=-5, high=5)


def test_log_of_one_plus_x_is_log1p():
    check(stabilize_pass, """
        func @main(%x: f32[N], %y: f32[N]) {
          %0 = constant 1.0 : f32[]
          %1 = add %0, %x : f32[N]
          %2 = log %1 : f32[N]
          %3 = sub %0, %y : f32[N]
          %4 = log %3 : f32[N]
          return %2, %4
        }""", """
        func @main(%x: f32[N], %y: f32[N]) {
          %0 = log1p %x : f32[N]
          %1 = neg %y : f32[N]
          %2 = log1p %1 : f32[N]
          return %0, %2
        }""", fired="log_one_plus", low=0.01, high=0.9)


def test_exp_minus_one_is_expm1():
    check(stabilize_pass, """
        func @main(%x: f32[N]) {
          %0 = exp %x : f32[N]
          %1 = constant 1.0 : f32[]
          %2 = sub %0, %1 : f32[N]
          return %2
        }""", """
        func @main(%x: f32[N]) {
          %0 = expm1 %x : f32[N]
          return %0
        }""", fired="exp_minus_one")


def test_naive_sigmoid_is_sigmoid():
    check(stabilize_pass, """
        func @main(%x: f32[N]) {
          %0 = neg %x : f32[N]
          %1 = exp %0 : f32[N]
          %2 = constant 1.0 : f32[]
          %3 = add %2, %1 : f32[N]
          %4 = div %2, %3 : f32[N]
          return %4
        }""", """
        func @main(%x: f32[N]) {
          %0 = sigmoid %x : f32[N]
          return %0
        }""", fired="naive_sigmoid", low=-5, high=5)


def test_naive_softmax_gets_the_max_subtracted():
    check(stabilize_pass, """
        func @main(%x: f32[N,4]) {
          %0 = exp %x : f32[N,4]
          %1 = sum %0 {axes=(1,), keepdims=true} : f32[N,1]
          %2 = div %0, %1 : f32[N,4]
          return %2
        }""", """
        func @main(%x: f32[N,4]) {
          %0 = max %x {axes=(1,), empty_identity=true, keepdims=true} : f32[N,1]
          %1 = sub %x, %0 : f32[N,4]
          %2 = exp %1 : f32[N,4]
          %3 = sum %2 {axes=(1,), keepdims=true} : f32[N,1]
          %4 = div %2, %3 : f32[N,4]
          return %4
        }""", fired="naive_softmax", low=-3, high=3)


def test_naive_softmax_over_the_leading_axis_without_kept_dims():
    check(stabilize_pass, """
        func @main(%x: f32[N,4]) {
          %0 = exp %x : f32[N,4]
          %1 = sum %0 {axes=(0,), keepdims=false} : f32[4]
          %2 = div %0, %1 : f32[N,4]
          return %2
        }""", """
        func @main(%x: f32[N,4]) {
          %0 = max %x {axes=(0,), empty_identity=true, keepdims=true} : f32[1,4]
          %1 = sub %x, %0 : f32[N,4]
          %2 = exp %1 : f32[N,4]
          %3 = sum %2 {axes=(0,), keepdims=true} : f32[1,4]
          %4 = div %2, %3 : f32[N,4]
          return %4
        }""", fired="naive_softmax", low=-3, high=3)


def test_a_sum_that_does_not_line_up_with_the_exp_is_not_a_softmax():
    # sum over axis 1 without kept dims, divided into a [4,4] tensor, broadcasts along
    # the other axis: not a softmax, and the rule must leave it alone
    unchanged(stabilize_pass, """
        func @main(%x: f32[4,4]) {
          %0 = exp %x : f32[4,4]
          %1 = sum %0 {axes=(1,), keepdims=false} : f32[4]
          %2 = div %0, %1 : f32[4,4]
          return %2
        }""")


def test_an_already_stable_softmax_is_left_alone():
    unchanged(stabilize_pass, """
        func @main(%x: f32[N,4]) {
          %0 = max %x {axes=(1,), empty_identity=true, keepdims=true} : f32[N,1]
          %1 = sub %x, %0 : f32[N,4]
          %2 = exp %1 : f32[N,4]
          %3 = sum %2 {axes=(1,), keepdims=true} : f32[N,1]
          %4 = div %2, %3 : f32[N,4]
          %5 = log %3 : f32[N,1]
          return %4, %5
        }""")


def test_log_of_softmax_is_the_log_softmax_form():
    check(stabilize_pass, """
        func @main(%x: f32[N,4]) {
          %0 = exp %x : f32[N,4]
          %1 = sum %0 {axes=(1,), keepdims=true} : f32[N,1]
          %2 = div %0, %1 : f32[N,4]
          %3 = log %2 : f32[N,4]
          return %3
        }""", """
        func @main(%x: f32[N,4]) {
          %0 = max %x {axes=(1,), empty_identity=true, keepdims=true} : f32[N,1]
          %1 = sub %x, %0 : f32[N,4]
          %2 = exp %1 : f32[N,4]
          %3 = sum %2 {axes=(1,), keepdims=true} : f32[N,1]
          %4 = log %3 : f32[N,1]
          %5 = sub %1, %4 : f32[N,4]
          return %5
        }""", fired=["naive_softmax", "log_softmax"], low=-3, high=3)


def test_log_sum_exp_gets_the_max_subtracted():
    check(stabilize_pass, """
        func @main(%x: f32[N,4]) {
          %0 = exp %x : f32[N,4]
          %1 = sum %0 {axes=(1,), keepdims=false} : f32[N]
          %2 = log %1 : f32[N]
          return %2
        }""", """
        func @main(%x: f32[N,4]) {
          %0 = max %x {axes=(1,), empty_identity=true, keepdims=true} : f32[N,1]
          %1 = sub %x, %0 : f32[N,4]
          %2 = exp %1 : f32[N,4]
          %3 = sum %2 {axes=(1,), keepdims=true} : f32[N,1]
          %4 = log %3 : f32[N,1]
          %5 = add %0, %4 : f32[N,1]
          %6 = reshape %5 {shape=(N,)} : f32[N]
          return %6
        }""", fired="logsumexp", low=-3, high=3)


def test_binary_cross_entropy_written_on_a_sigmoid_becomes_softplus_terms():
    check(stabilize_pass, """
        func @main(%z: f32[N], %t: f32[N]) {
          %0 = sigmoid %z : f32[N]
          %1 = log %0 : f32[N]
          %2 = mul %t, %1 : f32[N]
          %3 = constant 1.0 : f32[]
          %4 = sub %3, %t : f32[N]
          %5 = sub %3, %0 : f32[N]
          %6 = log %5 : f32[N]
          %7 = mul %4, %6 : f32[N]
          %8 = add %2, %7 : f32[N]
          %9 = neg %8 : f32[N]
          return %9
        }""", """
        func @main(%z: f32[N], %t: f32[N]) {
          %0 = neg %z : f32[N]
          %1 = softplus %0 : f32[N]
          %2 = neg %1 : f32[N]
          %3 = mul %t, %2 : f32[N]
          %4 = constant 1.0 : f32[]
          %5 = sub %4, %t : f32[N]
          %6 = softplus %z : f32[N]
          %7 = neg %6 : f32[N]
          %8 = mul %5, %7 : f32[N]
          %9 = add %3, %8 : f32[N]
          %10 = neg %9 : f32[N]
          return %10
        }""", fired=["log_sigmoid", "log_one_minus_sigmoid"], low=-4, high=4)


def test_every_stabilising_rule_has_a_docstring():
    from passes.rewrites import STABILIZE
    assert len({r.__name__ for r in STABILIZE}) == len(STABILIZE)
    assert all(r.__doc__ for r in STABILIZE)


# ----------------------------------------------------------------------------- finite at 1e4


def _compile(inputs, outputs, opt_level=2):
    return helpers.compile(inputs, outputs, target="reference", opt_level=opt_level)


def _finite_and_close(got, want, rtol=1e-5, atol=1e-6):
    got = np.asarray(got)
    assert np.all(np.isfinite(got)), f"non-finite values: {got}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _proj(shape, seed=7):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)).astype(np.float32)


def test_softmax_value_and_gradient_finite_at_1e4():
    x = ng.placeholder(("N", 4), name="x")
    r = ng.placeholder(("N", 4), name="r")
    s = ng.softmax(x)
    (gx,) = [ng.grad(ng.sum(s * r), x)]
    R = _proj(BIG.shape)
    val, g = _compile([x, r], [s, gx])(BIG, R)
    ref = np_softmax(BIG.astype(np.float64), axis=-1)
    _finite_and_close(val, ref)
    _finite_and_close(g, ref * (R - np.sum(ref * R, -1, keepdims=True)))


def test_log_softmax_value_and_gradient_finite_at_1e4():
    x = ng.placeholder(("N", 4), name="x")
    r = ng.placeholder(("N", 4), name="r")
    y = ng.log_softmax(x)
    gx = ng.grad(ng.sum(y * r), x)
    R = _proj(BIG.shape)
    val, g = _compile([x, r], [y, gx])(BIG, R)
    x64 = BIG.astype(np.float64)
    _finite_and_close(val, np_log_softmax(x64, axis=-1), rtol=1e-6)
    _finite_and_close(g, R - np_softmax(x64, axis=-1) * R.sum(-1, keepdims=True))


def test_cross_entropy_value_and_gradient_finite_at_1e4():
    x = ng.placeholder(("N", 4), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    loss = ng.cross_entropy(x, y)
    gx = ng.grad(loss, x)
    Y = np.array([1, 0, 2, 3], np.int32)
    val, g = _compile([x, y], [loss, gx])(BIG, Y)
    x64 = BIG.astype(np.float64)
    lsm = np_log_softmax(x64, axis=-1)
    _finite_and_close(val, -lsm[np.arange(4), Y].mean(), rtol=1e-6)
    _finite_and_close(g, (np_softmax(x64, axis=-1) - np.eye(4)[Y]) / 4)


def test_bce_from_logits_value_and_gradient_finite_at_1e4():
    z = ng.placeholder(("N",), name="z")
    t = ng.placeholder(("N",), name="t")
    loss = ng.binary_cross_entropy(z, t, from_logits=True)
    gz = ng.grad(loss, z)
    Z = np.array([1e4, -1e4, 0.5, -3e4, 2.0, 3e4], np.float32)
    T = np.array([0, 1, 1, 0, 0.25, 1], np.float32)
    val, g = _compile([z, t], [loss, gz])(Z, T)
    z64 = Z.astype(np.float64)
    _finite_and_close(val, np.mean(np.logaddexp(0, z64) - T * z64), rtol=1e-6)
    _finite_and_close(g, (expit(z64) - T) / Z.size)


def test_log_sigmoid_value_and_gradient_finite_at_1e4():
    x = ng.placeholder(("N",), name="x")
    y = ng.log(ng.sigmoid(x))
    gx = ng.grad(ng.sum(y), x)
    X = np.array([1e4, -1e4, 0.5, -3e4, 30.0, -30.0], np.float32)
    val, g = _compile([x], [y, gx])(X)
    x64 = X.astype(np.float64)
    _finite_and_close(val, log_expit(x64), rtol=1e-6)
    _finite_and_close(g, expit(-x64))


def test_bce_written_by_hand_on_a_sigmoid_is_finite_at_1e4():
    z = ng.placeholder(("N",), name="z")
    t = ng.placeholder(("N",), name="t")
    p = ng.sigmoid(z)
    loss = ng.mean(-(t * ng.log(p) + (1.0 - t) * ng.log(1.0 - p)))
    gz = ng.grad(loss, z)
    Z = np.array([1e4, -1e4, 0.5, -3e4, 2.0], np.float32)
    T = np.array([0, 1, 1, 0, 0.25], np.float32)
    val, g = _compile([z, t], [loss, gz])(Z, T)
    z64 = Z.astype(np.float64)
    _finite_and_close(val, np.mean(np.logaddexp(0, z64) - T * z64), rtol=1e-6)
    _finite_and_close(g, (expit(z64) - T) / Z.size)


def test_hand_written_softmax_and_logsumexp_values_are_repaired_by_the_pass():
    """Read from text (so nothing was stabilised as the nodes were built): at opt_level 0
    the naive forms overflow, at opt_level 2 they match float64."""
    g = ng.parse(ir("""
        func @main(%x: f32[N,4]) {
          %0 = exp %x : f32[N,4]
          %1 = sum %0 {axes=(1,), keepdims=true} : f32[N,1]
          %2 = div %0, %1 : f32[N,4]
          %3 = log %2 : f32[N,4]
          %4 = sum %0 {axes=(1,), keepdims=false} : f32[N]
          %5 = log %4 : f32[N]
          return %2, %3, %5
        }"""))
    x = g.inputs[0]
    x64 = BIG.astype(np.float64)
    want = [np_softmax(x64, axis=-1), np_log_softmax(x64, axis=-1), np_logsumexp(x64, axis=-1)]
    naive = _compile([x], g.outputs, opt_level=0)(BIG)
    assert not all(np.all(np.isfinite(v)) for v in naive)
    for got, w in zip(_compile([x], g.outputs, opt_level=2)(BIG), want):
        _finite_and_close(got, w, rtol=1e-6)


def test_log1p_and_expm1_keep_tiny_values():
    g = ng.parse(ir("""
        func @main(%x: f32[N]) {
          %0 = constant 1.0 : f32[]
          %1 = add %x, %0 : f32[N]
          %2 = log %1 : f32[N]
          %3 = exp %x : f32[N]
          %4 = sub %3, %0 : f32[N]
          return %2, %4
        }"""))
    X = np.array([1e-10, -3e-9, 2e-12], np.float32)
    a, b = _compile(g.inputs, g.outputs, opt_level=2)(X)
    np.testing.assert_allclose(a, np.log1p(X.astype(np.float64)), rtol=1e-6)
    np.testing.assert_allclose(b, np.expm1(X.astype(np.float64)), rtol=1e-6)
    a0, _ = _compile(g.inputs, g.outputs, opt_level=0)(X)
    assert np.all(a0 == 0)  # what the naive form gives, for contrast


@pytest.mark.parametrize("builder", ["softmax", "log_softmax"])
def test_composites_need_no_stabilising_rewrite(builder):
    """The composites are built stable: the stabilise pass finds nothing to do."""
    from nngraph.compiler import build_graph
    from passes.pipeline import optimize
    x = ng.placeholder(("N", 4), name="x")
    y = getattr(ng, builder)(x)
    g, _ = build_graph([x], [y, ng.grad(ng.sum(y), x)])
    _, log = optimize(g, 2)
    assert [e["rewrites"] for e in log if e["pass"] == "stabilize"] == [{}]
