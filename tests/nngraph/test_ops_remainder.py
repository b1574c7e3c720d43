"""ng.mod (Python's %, np.mod) and ng.fmod (C's fmod, np.fmod) on every target, over the
edge cases nngraph/semantics.py's remainder rule settles: signed zeros, infinities,
NaN, a zero divisor, and the integer divisors that trap in hardware (0, -1 with INT_MIN)."""
import numpy as np
import pytest

import nngraph as ng
from helpers import check_grad, rand, run

# the ONNX suite's edge cases (test_mod_float_edge_cases_fmod_0) and a few more
EDGE_A = [0.0, -0.0, 0.0, -0.0, -3.0, 3.0, -1.0, 1.0, np.inf, -np.inf, 1.0, 1.0, np.nan, 1.0,
          5.5, -5.5, 5.5, -5.5, 1e30, 7.0, -0.0, 4.0]
EDGE_B = [-2.0, 2.0, 2.0, -2.0, np.inf, np.inf, -np.inf, -np.inf, 2.0, 2.0, 0.0, -0.0, 2.0, np.nan,
          2.0, 2.0, -2.0, -2.0, 3.0, 0.1, -np.inf, -2.0]
OPS = {"mod": (ng.mod, np.mod), "fmod": (ng.fmod, np.fmod)}


def _same_bits(out, expected):
    """Equal values, NaN where NumPy has NaN, and the sign of every zero."""
    np.testing.assert_array_equal(out, expected)
    zeros = expected == 0
    np.testing.assert_array_equal(np.signbit(out[zeros]), np.signbit(expected[zeros]))


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_remainder_edge_cases_match_numpy(name, dtype, target):
    build, ref = OPS[name]
    a, b = np.array(EDGE_A, dtype), np.array(EDGE_B, dtype)
    x, y = ng.placeholder(a.shape, dtype), ng.placeholder(b.shape, dtype)
    with np.errstate(all="ignore"):
        expected = ref(a, b)
    out = run(build(x, y), {x: a, y: b}, target)
    assert out.dtype == np.dtype(dtype)
    _same_bits(out, expected)


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_remainder_never_traps_and_matches_numpy(name, dtype, target):
    """A zero divisor gives 0 (NumPy's answer), INT_MIN by -1 gives 0: no SIGFPE."""
    build, ref = OPS[name]
    low = np.iinfo(dtype).min
    a = np.array([-4, 7, 5, 4, -7, 8, low, low, 5, -5, 0, 13, low, 9], dtype)
    b = np.array([2, -3, 8, -2, 3, 5, -1, 0, 0, -1, -3, -4, 7, -9], dtype)
    x, y = ng.placeholder(a.shape, dtype), ng.placeholder(b.shape, dtype)
    with np.errstate(all="ignore"):
        expected = ref(a, b)
    out = run(build(x, y), {x: a, y: b}, target)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("name", sorted(OPS))
def test_remainder_broadcasts_and_python_operator_is_mod(name, target):
    build, ref = OPS[name]
    a = rand((3, 4), 1) * 10
    b = rand((4,), 2, low=0.5, high=3.0) * np.array([1, -1, 1, -1])
    x, y = ng.placeholder((3, 4), "float64"), ng.placeholder((4,), "float64")
    z = build(x, y)
    assert z.shape == (3, 4)
    np.testing.assert_allclose(run(z, {x: a, y: b}, target), ref(a, b), rtol=1e-12, atol=1e-12)
    if name == "mod":
        np.testing.assert_allclose(run(x % y, {x: a, y: b}, target), a % b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(run(7.5 % y, {y: b}, target), 7.5 % b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(OPS))
def test_remainder_gradient_by_finite_differences(name, target):
    """d/da = 1, d/db = -floor(a/b) (mod) or -trunc(a/b) (fmod), away from the jumps."""
    a = np.array([[5.3, -5.3, 7.9], [-2.2, 3.6, -8.1]])
    b = np.array([2.1, -1.7, 2.4])
    check_grad(OPS[name][0], [a, b], target=target)


def test_remainder_refuses_bool_operands():
    x, y = ng.placeholder((3,), "bool"), ng.placeholder((3,), "int32")
    with pytest.raises(ng.ShapeError, match="mod"):
        ng.mod(x, y)
