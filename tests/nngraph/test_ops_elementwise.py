"""Elementwise ops against their NumPy definitions: every unary and binary op of
the public API (docs/graphs.md), several shapes (0-d, size-1 axes, broadcasting), float32 and float64, a
symbolic batch size, Python-scalar operands and extreme magnitudes."""
import numpy as np
import pytest

import nngraph as ng
from helpers import rand, run, tol

SHAPES = [(), (1,), (5,), (3, 1, 4), (2, 3)]


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


# name -> (builder, numpy definition, input domain (low, high) or None for normal)
UNARY = {
    "exp": (ng.exp, np.exp, None),
    "log": (ng.log, np.log, (0.1, 3.0)),
    "log1p": (ng.log1p, np.log1p, (-0.5, 3.0)),
    "expm1": (ng.expm1, np.expm1, None),
    "sqrt": (ng.sqrt, np.sqrt, (0.1, 3.0)),
    "rsqrt": (ng.rsqrt, lambda a: 1 / np.sqrt(a), (0.1, 3.0)),
    "abs": (ng.abs, np.abs, None),
    "sign": (ng.sign, np.sign, None),
    "sin": (ng.sin, np.sin, None),
    "cos": (ng.cos, np.cos, None),
    "tanh": (ng.tanh, np.tanh, None),
    "sigmoid": (ng.sigmoid, _sigmoid, None),
    "relu": (ng.relu, lambda a: np.maximum(a, 0), None),
    "softplus": (ng.softplus, lambda a: np.log1p(np.exp(a)), None),
    "step": (ng.step, lambda a: (a >= 0).astype(a.dtype), None),
    "neg": (ng.neg, np.negative, None),
    "leaky_relu": (ng.leaky_relu, lambda a: np.where(a > 0, a, 0.01 * a), None),
    "leaky_relu_0.2": (lambda x: ng.leaky_relu(x, alpha=0.2), lambda a: np.where(a > 0, a, 0.2 * a), None),
    "elu": (ng.elu, lambda a: np.where(a > 0, a, np.expm1(a)), None),
    "selu": (ng.selu, lambda a: 1.0507009873554805 * np.where(a > 0, a, 1.6732632423543772 * np.expm1(a)), None),
    "clip": (lambda x: ng.clip(x, -0.5, 0.7), lambda a: np.clip(a, -0.5, 0.7), None),
    "stop_gradient": (ng.stop_gradient, lambda a: a, None),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_op_matches_numpy(name, dtype, target):
    build, ref, dom = UNARY[name]
    for k, shape in enumerate(SHAPES):
        a = rand(shape, seed=k, dtype=dtype, **({} if dom is None else dict(low=dom[0], high=dom[1])))
        x = ng.placeholder(shape, dtype)
        y = build(x)
        assert y.shape == shape and y.dtype == dtype
        out = run(y, {x: a}, target)
        assert out.dtype == np.dtype(dtype) and out.shape == shape
        np.testing.assert_allclose(out, ref(a.astype(np.float64)), **tol(dtype))


BINARY = {
    "add": (ng.add, np.add), "sub": (ng.sub, np.subtract), "mul": (ng.mul, np.multiply),
    "div": (ng.div, np.divide), "pow": (ng.pow, np.power),
    "maximum": (ng.maximum, np.maximum), "minimum": (ng.minimum, np.minimum),
}
PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 1)), ((), (2, 3)), ((1,), (5,)), ((2, 3), ())]


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_op_broadcasts_like_numpy(name, target):
    build, ref = BINARY[name]
    for k, (sa, sb) in enumerate(PAIRS):
        if name == "pow":
            a, b = rand(sa, k, low=0.2, high=2.0), rand(sb, k + 50, low=-1.5, high=1.5)
        elif name == "div":
            a, b = rand(sa, k), rand(sb, k + 50, low=0.5, high=2.0) * np.sign(rand(sb, k + 70))
        else:
            a, b = rand(sa, k), rand(sb, k + 50)
        x, y = ng.placeholder(sa, "float64"), ng.placeholder(sb, "float64")
        z = build(x, y)
        assert z.shape == np.broadcast_shapes(sa, sb)
        np.testing.assert_allclose(run(z, {x: a, y: b}, target), ref(a, b), rtol=1e-12, atol=1e-12)


def test_python_operators_and_scalars_keep_the_tensor_dtype(target):
    a, b = rand((2, 3), 1, "float32"), rand((3,), 2, "float32", low=0.5, high=2.0)
    x, y = ng.placeholder((2, 3)), ng.placeholder((3,))
    outs = [x + y, x - y, x * y, x / y, -x, 2.0 * x, x - 1, 3 / y, y ** 2.0, 2.0 ** x, abs(x), x @ y, x.T, +x]
    assert all(o.dtype == "float32" for o in outs)
    want = [a + b, a - b, a * b, a / b, -a, 2 * a, a - 1, 3 / b, b ** 2, 2.0 ** a, np.abs(a), a @ b, a.T, a]
    for got, w in zip(run(outs, {x: a, y: b}, target), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def test_comparisons_and_logical_ops_give_bool(target):
    a, b = rand((4, 3), 3), rand((3,), 4)
    a[0, 0] = b[0]  # a tie, so <= and == differ from <
    x, y = ng.placeholder((4, 3), "float64"), ng.placeholder((3,), "float64")
    outs = [x < y, x <= y, x > y, x >= y, ng.equal(x, y), ng.not_equal(x, y),
            (x < y) & (x > 0.0), (x < y) | (x > 0.0), ~(x < y), ng.logical_and(x < y, y > 0.0)]
    want = [a < b, a <= b, a > b, a >= b, a == b, a != b, (a < b) & (a > 0), (a < b) | (a > 0), ~(a < b),
            (a < b) & (b > 0)]
    for o, got, w in zip(outs, run(outs, {x: a, y: b}, target), want):
        assert o.dtype == "bool" and got.dtype == np.bool_
        np.testing.assert_array_equal(got, w)


def test_where_broadcasts_condition_and_branches(target):
    a, b, c = rand((2, 1, 4), 5), rand((3, 1), 6), rand((3, 4), 7)
    x, y, z = ng.placeholder((2, 1, 4), "float64"), ng.placeholder((3, 1), "float64"), ng.placeholder((3, 4), "float64")
    w = ng.where(z > 0.0, x, y)
    assert w.shape == (2, 3, 4)
    np.testing.assert_array_equal(run(w, {x: a, y: b, z: c}, target), np.where(c > 0, a, b))
    np.testing.assert_array_equal(run(ng.where(z > 0.0, z, 0.5), {z: c}, target), np.where(c > 0, c, 0.5))


@pytest.mark.parametrize("src,dst", [("float32", "float64"), ("float64", "float32"), ("float32", "int32"),
                                     ("int32", "float32"), ("int64", "int32"), ("float32", "bool"), ("bool", "float32")])
def test_cast_converts_like_numpy_astype(src, dst, target):
    a = (rand((3, 4), 8) * 5).astype(src) if src != "bool" else rand((3, 4), 8) > 0
    x = ng.placeholder((3, 4), src)
    y = ng.cast(x, dst)
    assert y.dtype == dst
    np.testing.assert_array_equal(run(y, {x: a}, target), a.astype(dst))


def test_integer_arithmetic_stays_integer_and_division_is_true_division(target):
    a = np.array([[7, -3, 5]], np.int32)
    b = np.array([2, 4, -5], np.int32)
    x, y = ng.placeholder((1, 3), "int32"), ng.placeholder((3,), "int32")
    s, q = x + y * 2, x / y
    assert s.dtype == "int32" and q.dtype == "float32"
    got_s, got_q = run([s, q], {x: a, y: b}, target)
    np.testing.assert_array_equal(got_s, a + b * 2)
    np.testing.assert_allclose(got_q, a / b, rtol=1e-6)


def test_symbolic_batch_size_runs_for_any_value(target):
    x = ng.placeholder(("N", 3), "float64", name="x")
    b = ng.placeholder((3,), "float64", name="b")
    y = ng.tanh(x * b) + ng.exp(-x)
    assert str(y.shape[0]) == "N"
    import helpers
    fn = helpers.compile([x, b], y, target)
    bv = rand((3,), 9)
    for n in (1, 4, 7):
        a = rand((n, 3), n)
        np.testing.assert_allclose(fn(a, bv), np.tanh(a * bv) + np.exp(-a), rtol=1e-12)


def test_stable_ops_stay_finite_at_extreme_magnitudes(target):
    a = np.array([-1e4, -800.0, -30.0, 0.5, 30.0, 800.0, 1e4], np.float32)
    x = ng.placeholder((7,))
    sig, sp, el = run([ng.sigmoid(x), ng.softplus(x), ng.elu(x)], {x: a}, target)
    for v in (sig, sp, el):
        assert np.all(np.isfinite(v))
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(sig, 1 / (1 + np.exp(-a.astype(np.float64))), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(sp, np.logaddexp(0, a.astype(np.float64)), rtol=1e-6)


def test_elementwise_shape_errors_name_the_operands():
    x, y = ng.placeholder((3, 4), name="x"), ng.placeholder((5,), name="y")
    with pytest.raises(ng.ShapeError, match=r"add.*x: f32\[3,4\].*y: f32\[5\]"):
        x + y
    with pytest.raises(ng.ShapeError, match="float"):
        ng.exp(ng.placeholder((2,), "int32"))
    with pytest.raises(ng.ShapeError, match="bool"):
        ng.where(x, x, x)
