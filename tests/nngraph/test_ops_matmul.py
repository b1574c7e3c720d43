"""matmul and dot against NumPy: 1-d operands, batched and broadcast batches, a
symbolic batch size, dtype promotion, integer operands, and the shape error."""
import numpy as np
import pytest

import nngraph as ng
from helpers import compile, rand, run

CASES = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (2, 4, 5)),
         ((2, 3, 4), (4, 5)), ((1, 3, 4), (6, 4, 2)), ((5, 1, 3, 4), (2, 4, 1)), ((1, 1), (1, 1)), ((3,), (2, 3, 1))]


@pytest.mark.parametrize("sa,sb", CASES)
def test_matmul_matches_numpy(sa, sb, target):
    a, b = rand(sa, 1), rand(sb, 2)
    x, y = ng.placeholder(sa, "float64"), ng.placeholder(sb, "float64")
    z = ng.matmul(x, y)
    want = np.matmul(a, b)
    assert z.shape == want.shape
    got, got_op = run([z, x @ y], {x: a, y: b}, target)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_op, want, rtol=1e-12, atol=1e-12)


def test_dot_for_scalars_vectors_and_matrices(target):
    s, v, m = rand((), 3), rand((4,), 4), rand((4, 3), 5)
    xs, xv, xm = ng.placeholder((), "float64"), ng.placeholder((4,), "float64"), ng.placeholder((4, 3), "float64")
    outs = [ng.dot(xs, xv), ng.dot(xv, xv), ng.dot(xv, xm), ng.dot(xm.T, xv)]
    for got, w in zip(run(outs, {xs: s, xv: v, xm: m}, target), [np.dot(s, v), v @ v, v @ m, m.T @ v]):
        np.testing.assert_allclose(got, w, rtol=1e-12)


def test_matmul_with_a_symbolic_batch(target):
    x = ng.placeholder(("N", 3), "float32")
    w = ng.parameter(rand((3, 4), 6, "float32"), name="w")
    xb = ng.placeholder(("N", 2, 3), "float32")
    fn = compile([x, xb], [x @ w, xb @ w], target)
    for n in (1, 5):
        a, ab = rand((n, 3), n, "float32"), rand((n, 2, 3), n + 10, "float32")
        y, yb = fn(a, ab)
        np.testing.assert_allclose(y, a @ w.value, rtol=1e-5)
        np.testing.assert_allclose(yb, ab @ w.value, rtol=1e-5)


def test_matmul_promotes_dtypes_and_multiplies_integers(target):
    a, b = rand((2, 3), 7, "float32"), rand((3, 2), 8, "float64")
    x, y = ng.placeholder((2, 3), "float32"), ng.placeholder((3, 2), "float64")
    z = x @ y
    assert z.dtype == "float64"
    np.testing.assert_allclose(run(z, {x: a, y: b}, target), a.astype(np.float64) @ b, rtol=1e-12)
    ia, ib = np.arange(6, dtype=np.int32).reshape(2, 3) - 2, np.arange(6, dtype=np.int32).reshape(3, 2) + 1
    p, q = ng.placeholder((2, 3), "int32"), ng.placeholder((3, 2), "int32")
    np.testing.assert_array_equal(run(p @ q, {p: ia, q: ib}, target), ia @ ib)


def test_matmul_shape_error_names_operands_and_sizes():
    x, w = ng.placeholder(("N", 784), name="x"), ng.placeholder((512, 10), name="W")
    with pytest.raises(ng.ShapeError, match=r"matmul: cannot multiply x: f32\[N,784\] by W: f32\[512,10\]: "
                                            r"inner sizes 784 and 512 differ"):
        x @ w
    with pytest.raises(ng.ShapeError, match="broadcast"):
        ng.placeholder((2, 3, 4)) @ ng.placeholder((3, 4, 5))
    with pytest.raises(ng.ShapeError, match="1-d"):
        ng.matmul(ng.placeholder(()), ng.placeholder((3,)))
