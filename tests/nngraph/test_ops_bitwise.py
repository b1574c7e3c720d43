"""Bitwise ops on int32 and int64 against NumPy on every target (negative values and
the extremes included: two's complement bits), their operators (`& | ^ ~`, logical on
bool tensors as in NumPy), and their refusal of floats and bools by name."""
import numpy as np
import pytest

import nngraph as ng
from helpers import run

BINARY = {"bitwise_and": (ng.bitwise_and, np.bitwise_and), "bitwise_or": (ng.bitwise_or, np.bitwise_or),
          "bitwise_xor": (ng.bitwise_xor, np.bitwise_xor)}


def _ints(dtype, shape, seed):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    a = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    a.reshape(-1)[:3] = [info.min, info.max, -1][:a.size]
    return a


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_bitwise_binary_op_matches_numpy_and_broadcasts(name, dtype, target):
    build, ref = BINARY[name]
    a, b = _ints(dtype, (3, 4), 1), _ints(dtype, (4,), 2)
    x, y = ng.placeholder(a.shape, dtype), ng.placeholder(b.shape, dtype)
    out = run(build(x, y), {x: a, y: b}, target)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, ref(a, b))


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_bitwise_not_and_operators_match_numpy(dtype, target):
    a, b = _ints(dtype, (5,), 3), _ints(dtype, (5,), 4)
    x, y = ng.placeholder(a.shape, dtype), ng.placeholder(b.shape, dtype)
    outs = run([ng.bitwise_not(x), ~x, x & y, x | y, x ^ y, (x & 6) + (3 | y)], {x: a, y: b}, target)
    want = [~a, ~a, a & b, a | b, a ^ b, (a & 6) + (3 | b)]
    for got, w in zip(outs, want):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, w)


def test_operators_on_bool_tensors_stay_logical(target):
    a, b = np.array([True, True, False, False]), np.array([True, False, True, False])
    x, y = ng.placeholder((4,), "bool"), ng.placeholder((4,), "bool")
    outs = run([x & y, x | y, x ^ y, ~x], {x: a, y: b}, target)
    for got, w in zip(outs, [a & b, a | b, a ^ b, ~a]):
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, w)


@pytest.mark.parametrize("build", [ng.bitwise_and, ng.bitwise_or, ng.bitwise_xor])
def test_bitwise_ops_refuse_floats_and_bools_by_name(build):
    f, i, b = ng.placeholder((3,), "float32"), ng.placeholder((3,), "int32"), ng.placeholder((3,), "bool")
    for pair in ((i, f), (f, f), (b, b)):
        with pytest.raises(ng.ShapeError, match=f"{build.__name__}: needs integer operands"):
            build(*pair)
    with pytest.raises(ng.ShapeError, match="bitwise_not: needs integer operands"):
        ng.bitwise_not(f)


def test_bitwise_ops_have_no_gradient():
    x = ng.placeholder((3,), "float32")
    i = ng.placeholder((3,), "int32")
    y = ng.sum(x * ng.cast(ng.bitwise_and(i, 1), "float32"))
    (g,) = ng.grad(y, [x])     # the integer path is not differentiated, the float one is
    assert g.shape == (3,)
