"""ng.trunc_div: C's integer division (ONNX's integer Div), exact on every target, over
the cases nngraph/semantics.py's rule settles: operands near 2**62 that a float64 detour
would round, negative operands (truncation toward zero, not NumPy's floor), and the
divisors that trap in hardware (0, and -1 with INT_MIN)."""
import numpy as np
import pytest

import nngraph as ng
from helpers import assert_roundtrip, run


def _c_division(a: int, b: int, bits: int) -> int:
    """C's a / b in Python's exact integers, with the rule's values for b = 0 and the wrap."""
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    q = q if (a < 0) == (b < 0) else -q
    wrap = 1 << bits
    return (q + wrap // 2) % wrap - wrap // 2


def _cases(dtype):
    low, high = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
    big = 2 ** 62 + 12345 if dtype == "int64" else 2 ** 30 + 12345
    pairs = [(7, 2), (-7, 2), (7, -2), (-7, -2), (6, 3), (-6, 3), (0, -5), (1, 3), (-1, 3),
             (big, 3), (-big, 3), (big + 1, -7), (big, big - 1), (-big, 2 ** 31 - 1),
             (high, 10), (low, 10), (low, -1), (high, -1), (low, 0), (5, 0), (-5, 0), (low, low),
             (low + 1, -1), (5, -1), (high, high), (low, 1)]
    a = np.array([p[0] for p in pairs], dtype)
    b = np.array([p[1] for p in pairs], dtype)
    want = np.array([_c_division(x, y, np.iinfo(dtype).bits) for x, y in pairs], dtype)
    return a, b, want


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_trunc_div_is_exact_and_truncates_toward_zero(dtype, target):
    a, b, want = _cases(dtype)
    x, y = ng.placeholder(a.shape, dtype), ng.placeholder(b.shape, dtype)
    out = run(ng.trunc_div(x, y), {x: a, y: b}, target)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, want)


def test_trunc_div_times_divisor_plus_fmod_gives_back_the_dividend(target):
    """a == trunc_div(a, b) * b + fmod(a, b) for every pair, divisor 0 included."""
    rng = np.random.default_rng(0)
    a = rng.integers(-2 ** 62, 2 ** 62, size=(4, 6), dtype=np.int64)
    b = rng.integers(-1000, 1000, size=(6,), dtype=np.int64)
    b[0] = 0
    x, y = ng.placeholder(a.shape, "int64"), ng.placeholder(b.shape, "int64")
    q, r = run([ng.trunc_div(x, y), ng.fmod(x, y)], {x: a, y: b}, target)
    np.testing.assert_array_equal(np.where(b == 0, 0, q * b + r), np.where(b == 0, 0, a))
    np.testing.assert_array_equal(q[:, 0], 0)


def test_trunc_div_broadcasts_and_promotes_int32_with_int64(target):
    a = np.array([[-9, 9, 2 ** 40 + 1]], np.int64)
    b = np.array([[2], [-4]], np.int32)
    x, y = ng.placeholder(a.shape, "int64"), ng.placeholder(b.shape, "int32")
    z = ng.trunc_div(x, y)
    assert (z.shape, z.dtype) == ((2, 3), "int64")
    assert "trunc_div" in assert_roundtrip(z)
    np.testing.assert_array_equal(run(z, {x: a, y: b}, target),
                                  [[-4, 4, 2 ** 39], [2, -2, -(2 ** 38)]])
    np.testing.assert_array_equal(run(ng.trunc_div(x, -4), {x: a}, target), [[2, -2, -(2 ** 38)]])


@pytest.mark.parametrize("dtype", ["float32", "bool"])
def test_trunc_div_refuses_non_integer_operands_by_name(dtype):
    x, y = ng.placeholder((3,), dtype), ng.placeholder((3,), dtype)
    with pytest.raises(ng.ShapeError, match=f"trunc_div.*integer.*{dtype}"):
        ng.trunc_div(x, y)
