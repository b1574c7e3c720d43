"""Reductions against NumPy: every axis form (None, int, negative, tuple), keepdims,
0-d and size-1 inputs, symbolic axes, integer sums, argmax's first-max rule, and
logsumexp's stability."""
import numpy as np
import pytest

import nngraph as ng
from helpers import compile, rand, run

AXES = [None, 0, -1, (0, 2), (1,), (0, 1, 2)]
REDUCE = {"sum": (ng.sum, np.sum), "mean": (ng.mean, np.mean), "max": (ng.max, np.max), "min": (ng.min, np.min)}


@pytest.mark.parametrize("name", sorted(REDUCE))
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_matches_numpy_for_every_axis_form(name, keepdims, target):
    build, ref = REDUCE[name]
    a = rand((3, 1, 4), 1)
    x = ng.placeholder((3, 1, 4), "float64")
    outs = [build(x, axis=ax, keepdims=keepdims) for ax in AXES]
    for ax, o, got in zip(AXES, outs, run(outs, {x: a}, target)):
        want = ref(a, axis=ax, keepdims=keepdims)
        assert o.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"{name} axis={ax}")


@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reduction_of_0d_and_size_1_inputs(name, target):
    build, ref = REDUCE[name]
    for shape in [(), (1,), (1, 1)]:
        a = rand(shape, 3)
        x = ng.placeholder(shape, "float64")
        got = run(build(x), {x: a}, target)
        assert got.shape == ()
        np.testing.assert_allclose(got, ref(a), rtol=1e-12)


def test_tensor_methods_reduce(target):
    a = rand((2, 5), 4, "float32")
    x = ng.placeholder((2, 5))
    outs = [x.sum(), x.sum(axis=1), x.mean(axis=0, keepdims=True), x.max(axis=-1), x.min()]
    want = [a.sum(), a.sum(1), a.mean(0, keepdims=True), a.max(-1), a.min()]
    for got, w in zip(run(outs, {x: a}, target), want):
        np.testing.assert_allclose(got, w, rtol=1e-5)


def test_reductions_over_a_symbolic_axis(target):
    x = ng.placeholder(("N", 3), "float64")
    outs = [ng.sum(x, 0), ng.mean(x, 0), ng.mean(x), ng.max(x, 0), ng.min(x, 1)]
    fn = compile([x], outs, target)
    for n in (1, 2, 6):
        a = rand((n, 3), n)
        for got, w in zip(fn(a), [a.sum(0), a.mean(0), a.mean(), a.max(0), a.min(1)]):
            np.testing.assert_allclose(got, w, rtol=1e-12)


def test_integer_and_bool_sums(target):
    a = np.arange(-6, 6, dtype=np.int32).reshape(3, 4) * 3 + 1
    x = ng.placeholder((3, 4), "int32")
    s, m, c = run([ng.sum(x, 1), ng.mean(x), ng.sum(x > 0)], {x: a}, target)
    assert s.dtype == np.int32 and m.dtype == np.float32
    np.testing.assert_array_equal(s, a.sum(1))
    np.testing.assert_allclose(m, a.mean(), rtol=1e-6)
    assert c == (a > 0).sum()


def test_argmax_returns_the_first_maximum_as_int64(target):
    a = rand((4, 5), 5)
    a[1, 1] = a[1, 3] = a[1].max() + 1.0  # a tie: the first one wins
    x = ng.placeholder((4, 5), "float64")
    outs = [ng.argmax(x), ng.argmax(x, 0), ng.argmax(x, 1, keepdims=True), ng.argmax(x, axis=None)]
    got = run(outs, {x: a}, target)
    assert all(o.dtype == "int64" for o in outs) and got[0].dtype == np.int64
    np.testing.assert_array_equal(got[0], a.argmax(-1))
    assert got[0][1] == 1
    np.testing.assert_array_equal(got[1], a.argmax(0))
    np.testing.assert_array_equal(got[2], a.argmax(1)[:, None])
    assert got[3] == a.argmax()


@pytest.mark.parametrize("axis", [-1, 0, (0, 1)])
def test_logsumexp_matches_numpy_and_never_overflows(axis, target):
    a = rand((3, 4), 6)
    x = ng.placeholder((3, 4), "float64")
    from scipy.special import logsumexp
    got, big = run([ng.logsumexp(x, axis), ng.logsumexp(x * 1e4, axis)], {x: a}, target)
    np.testing.assert_allclose(got, logsumexp(a, axis=axis), rtol=1e-12)
    np.testing.assert_allclose(big, logsumexp(a * 1e4, axis=axis), rtol=1e-12)
    k = run(ng.logsumexp(x, axis, keepdims=True), {x: a}, target)
    np.testing.assert_allclose(k, logsumexp(a, axis=axis, keepdims=True), rtol=1e-12)


def test_reduction_errors():
    x = ng.placeholder((3, 4), name="x")
    with pytest.raises(ng.ShapeError, match="out of range"):
        ng.sum(x, 2)
    with pytest.raises(ng.ShapeError, match="repeated"):
        ng.sum(x, (0, 0))
    with pytest.raises(ng.ShapeError, match="size 0"):
        ng.max(ng.placeholder((0, 3)), 0)
