"""Rules that every executor of a graph or Program must agree on, written once:
the graph ops' NumPy references, the lowering, the Program interpreter and both
backends import them from here.

- Reduction identities: what an empty sum/max/min/argmax yields, and what masked
  or padded lanes hold so they never win (`reduce_identity`).
- The argmax rule: the first maximum in scan order wins; a NaN beats any number and
  the first NaN wins (as np.argmax; max propagates NaN as np.max). The graph op's
  reference and the interpreter use np.argmax; each other executor spells this rule in
  its own instructions in one helper that points here: passes/lower/pool.py
  `_argmax_better` (max pooling's window scan), codegen/llvm/stage.py `argmax_better`
  (the LLVM accumulator), codegen/triton/loop_kernel.py `_argmax_take` (the Triton
  accumulator and split combine; `finish` folds a block by the same rule).
- Signed zeros: which of -0.0 and +0.0 a max or min of the two gives is not specified
  (np.maximum does not order them either: it keeps its first argument); a backend may
  take either (codegen/llvm/stage.py lets LLVM's maximum ignore the sign, one vmaxps).
- How the partial results of a reduction over chunks fold (`partial_combine`), which
  passes/split_reduce.py uses to decide which kernels both backends may split.
- The two remainders (`remainder_from_fmod`) and integer division
  truncating toward zero (`trunc_div_reference`, `trunc_div_from_sdiv`).
"""
from __future__ import annotations

import math

import numpy as np

from .types import is_float, np_dtype


def reduce_identity(kind: str, dtype: str):
    """The identity of reduction `kind` (sum, max, min, argmax) over `dtype`, as a Python
    scalar: 0 for sum; for max and argmax the lowest value (-inf, the integer minimum,
    False); for min the highest (+inf, the integer maximum, True)."""
    if kind == "sum":
        return False if dtype == "bool" else (0.0 if is_float(dtype) else 0)
    if kind not in ("max", "min", "argmax"):
        raise ValueError(f"unknown reduction {kind!r}")
    low = kind != "min"
    if is_float(dtype):
        return -math.inf if low else math.inf
    if dtype == "bool":
        return not low
    info = np.iinfo(np_dtype(dtype))
    return int(info.min) if low else int(info.max)


def lowest(dtype: str):
    """The value no element can be below: -inf, the integer minimum, False."""
    return reduce_identity("max", dtype)



def partial_combine(kind: str) -> str | None:
    """The reduction that folds the partial results of reduction `kind` over chunks of
    its domain, or None where partials do not fold. Each kind folds with itself: sums
    add (float reassociation, as a vectorised sum already does), max/min fold with NaN
    propagating, argmax folds (value, index) pairs by the argmax rule above, which picks
    the first index among equals as long as chunks are folded in order."""
    return kind if kind in ("sum", "max", "min", "argmax") else None


# ----------------------------------------------------------------------------- remainders
#
# Two remainders, as NumPy has them (and ONNX's Mod with fmod=1 / fmod=0):
# - fmod(a, b) is C's fmod: a - trunc(a / b) * b computed exactly, the sign of the
#   dividend; fmod(±inf, b) and fmod(a, 0) are NaN, fmod(a, ±inf) = a, fmod(±0, b) = ±0.
# - mod(a, b) is Python's % (np.mod): the sign of the divisor. From r = fmod(a, b): where
#   r is not zero and its sign differs from b's, r + b (so mod(-3, inf) = inf and
#   mod(1, -inf) = -inf, as np.mod); where r is zero, a zero with b's sign
#   (mod(-0.0, 2) = 0.0, mod(0.0, -2) = -0.0); NaN stays NaN.
# - Integers: a divisor of 0 gives 0 (NumPy's answer, with its warning), never a trap;
#   so does -1 (INT_MIN % -1 traps on x86 as INT_MIN / -1 does).
# The graph ops' references are np.mod / np.fmod; the lowering spells both with one scalar
# instruction, `fmod` (C's fmod, srem on integers, whose divisor is never 0 or -1), through
# the two functions below, so no backend has a rule of its own.

def safe_int_divisor(b, op, const):
    """An integer divisor that never traps and gives the same remainder: 0 and -1
    become 1 (every remainder by them is 0). `op(name, *args)` builds one scalar op,
    `const(v)` a literal of b's dtype."""
    zero_or_minus_one = op("logical_or", op("equal", b, const(0)), op("equal", b, const(-1)))
    return op("where", zero_or_minus_one, const(1), b)


def floor_mod_from_fmod(r, b, op, const, signed_zero=True):
    """np.mod(a, b) from r = fmod(a, b) and the divisor b (the rule above); `signed_zero`
    gives a zero remainder b's sign (floats only: an integer zero has no sign)."""
    zero = const(0)
    flip = op("logical_and", op("not_equal", r, zero),
              op("not_equal", op("less", r, zero), op("less", b, zero)))
    fixed = op("where", flip, op("add", r, b), r)
    if not signed_zero:
        return fixed
    return op("where", op("equal", r, zero), op("where", op("less", b, zero), const(-0.0), zero), fixed)


def remainder_from_fmod(name, a, b, dtype, op, const):
    """`name` ("mod" or "fmod") of a and b in `dtype` from one scalar `fmod`: by a safe
    divisor on integers, then np.mod's sign fix-up for mod (the rules above). The one
    spelling the lowering and the ONNX export share; `op` and `const` as in
    `safe_int_divisor`."""
    floats = is_float(dtype)
    r = op("fmod", a, b if floats else safe_int_divisor(b, op, const))
    return floor_mod_from_fmod(r, b, op, const, signed_zero=floats) if name == "mod" else r


# ----------------------------------------------------------------------------- integer division
#
# trunc_div(a, b) on int32/int64 is C's a / b: the exact quotient truncated toward zero
# (ONNX's integer Div), never through floats (int64 beyond 2**53 would round). Divisors
# that trap in hardware get defined values, as the remainders above do: a / 0 = 0
# (NumPy's integer answer, and what makes a == trunc_div(a, b) * b + fmod(a, b) hold with
# fmod(a, 0) = 0), and a / -1 = -a with two's complement wrap-around, so
# INT_MIN / -1 = INT_MIN (NumPy's answer). The graph op's reference is
# `trunc_div_reference`; the lowering spells it with one scalar instruction, `trunc_div`
# (sdiv, whose divisor is never 0 or -1), through `trunc_div_from_sdiv`.

def trunc_div_reference(a, b):
    """C's a / b on NumPy integer arrays of one dtype, exact, by the rule above."""
    a, b = np.asarray(a), np.asarray(b)
    safe = np.where((b == 0) | (b == -1), np.ones_like(b), b)
    with np.errstate(all="ignore"):
        q = (a - np.fmod(a, safe)) // safe          # an exact division: floor == trunc
        q = np.where(b == -1, np.negative(a), q)    # wraps INT_MIN to itself
    return np.where(b == 0, np.zeros_like(q), q).astype(np.result_type(a, b), copy=False)


def trunc_div_from_sdiv(a, b, op, const):
    """trunc_div(a, b) from one scalar `trunc_div` by a safe divisor (the rule above);
    `op` and `const` as in `safe_int_divisor`."""
    q = op("trunc_div", a, safe_int_divisor(b, op, const))
    q = op("where", op("equal", b, const(-1)), op("sub", const(0), a), q)
    return op("where", op("equal", b, const(0)), const(0), q)
