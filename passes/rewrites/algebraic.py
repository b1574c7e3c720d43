"""Algebraic simplification: small rules, each exact (same value, bit for bit,
unless its docstring says otherwise), each looking at one node.

Float caveats, chosen on purpose and tested:
- x + 0 -> x and 0 + x -> x keep a -0.0 that the original made +0.0 (-0.0 + 0.0 is
  +0.0); the two zeros differ only as divisors (the sign of the infinity).
- x * 0 -> 0 only when x can never be inf or NaN (`known_finite`: integers, finite
  constants, casts from integers and bools, ...); for a float from unknown values
  inf * 0 is NaN. The zero is +0.0 (a negative x would have given -0.0).
- exp(log x) -> x: for x < 0 the original is NaN, the rewrite gives x (Theano's choice).
- pow(x, 0.5) -> sqrt(x): differs only at x = -inf (pow gives inf, sqrt NaN) and at
  -0.0 (pow gives +0.0, sqrt -0.0).
- x / c -> x * (1/c) only when every element of c is a power of two with a normal,
  finite reciprocal: then 1/c is exact and both sides round the same real number.
"""
from __future__ import annotations

import numpy as np

from nngraph.node import ConstValue, Tensor
from nngraph.ops.reduce import reduced_shape
from nngraph.types import is_float

from .patterns import const, fit, is_value, known_finite, node, uniform_value, zeros


def _arith(n: Tensor, op: str) -> bool:
    return n.op == op and n.dtype != "bool"


# ----------------------------------------------------------------------------- identities


def mul_by_one(n):
    """x * 1 -> x, 1 * x -> x."""
    if _arith(n, "mul"):
        a, b = n.inputs
        if is_value(b, 1):
            return fit(a, n)
        if is_value(a, 1):
            return fit(b, n)
    return None


def add_zero(n):
    """x + 0 -> x, 0 + x -> x (a -0.0 may become +0.0; see the module docstring)."""
    if _arith(n, "add"):
        a, b = n.inputs
        if is_value(b, 0):
            return fit(a, n)
        if is_value(a, 0):
            return fit(b, n)
    return None


def sub_zero(n):
    """x - 0 -> x (exact, -0.0 - 0.0 is -0.0)."""
    if _arith(n, "sub") and is_value(n.inputs[1], 0):
        return fit(n.inputs[0], n)
    return None


def zero_sub(n):
    """0 - x -> neg x."""
    if _arith(n, "sub") and is_value(n.inputs[0], 0) and is_float(n.dtype):
        x = n.inputs[1]
        if x.dtype == n.dtype:
            return fit(node("neg", (x,), n), n)
    return None


def div_by_one(n):
    """x / 1 -> x (when x already has the result's dtype)."""
    if _arith(n, "div") and is_value(n.inputs[1], 1):
        return fit(n.inputs[0], n)
    return None


def mul_by_zero(n):
    """x * 0 -> 0 when neither operand can be inf or NaN (inf * 0 is NaN); the zero
    is +0.0 even where x < 0 would have given -0.0 (see the module docstring)."""
    if _arith(n, "mul"):
        a, b = n.inputs
        for x, z in ((a, b), (b, a)):
            if is_value(z, 0) and known_finite(x) and known_finite(z):
                return zeros(n)
    return None


def mul_by_minus_one(n):
    """x * -1 -> neg x, -1 * x -> neg x."""
    if _arith(n, "mul"):
        a, b = n.inputs
        for x, c in ((a, b), (b, a)):
            if is_value(c, -1) and x.dtype == n.dtype:
                return fit(node("neg", (x,), n), n)
    return None


def neg_neg(n):
    """neg(neg x) -> x."""
    if n.op == "neg" and n.inputs[0].op == "neg":
        return n.inputs[0].inputs[0]
    return None


def neg_of_mul_by_neg(n):
    """neg(neg(a) * b) -> a * b and neg(a) * neg(b) -> a * b (negation is exact)."""
    if n.op == "neg" and n.inputs[0].op == "mul" and is_float(n.dtype):
        a, b = n.inputs[0].inputs
        if a.op == "neg":
            return node("mul", (a.inputs[0], b), n)
        if b.op == "neg":
            return node("mul", (a, b.inputs[0]), n)
    if _arith(n, "mul") and is_float(n.dtype) and all(i.op == "neg" for i in n.inputs):
        return node("mul", (n.inputs[0].inputs[0], n.inputs[1].inputs[0]), n)
    return None


def neg_into_constant(n):
    """neg(x * c) -> x * (-c) and (neg x) * c -> x * (-c) for a float constant c (negation is exact)."""
    if not is_float(n.dtype):
        return None
    if n.op == "neg" and n.inputs[0].op == "mul":
        a, b = n.inputs[0].inputs
        for x, c in ((a, b), (b, a)):
            if c.op == "constant" and c.dtype == n.dtype:
                return node("mul", (x, _negated(c, n)), n)
    if n.op == "mul":
        a, b = n.inputs
        for x, c in ((a, b), (b, a)):
            if x.op == "neg" and c.op == "constant" and c.dtype == n.dtype:
                return node("mul", (x.inputs[0], _negated(c, n)), n)
    return None


def _negated(c, at):
    return node("constant", (), at, value=ConstValue(np.negative(c.attrs["value"].array)))


def div_by_constant(n):
    """x / c -> x * (1/c) when every element of c is a power of two (1/c exact)."""
    if not (_arith(n, "div") and is_float(n.dtype)):
        return None
    x, c = n.inputs
    if c.op != "constant" or c.dtype != n.dtype or x.dtype != n.dtype:
        return None
    a = c.attrs["value"].array
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a == 0):
        return None
    mant, _ = np.frexp(a)
    with np.errstate(all="ignore"):
        r = (1 / a).astype(a.dtype)
    if not np.all(np.abs(mant) == 0.5) or not np.all(np.isfinite(r)) or np.any(np.abs(r) < np.finfo(a.dtype).tiny):
        return None
    return node("mul", (x, node("constant", (), n, value=ConstValue(r))), n)


def pow_special(n):
    """pow(x, 1) -> x, pow(x, 2) -> x * x, pow(x, 0.5) -> sqrt x (see the module docstring)."""
    if n.op != "pow":
        return None
    x, e = n.inputs
    if x.dtype != n.dtype:
        return None
    if is_value(e, 1):
        return fit(x, n)
    if is_value(e, 2):
        return fit(node("mul", (x, x), n), n)
    if is_value(e, 0.5):
        return fit(node("sqrt", (x,), n), n)
    return None


def cast_same_dtype(n):
    """cast(x) to x's own dtype -> x."""
    if n.op == "cast" and n.inputs[0].dtype == n.attrs["dtype"]:
        return n.inputs[0]
    return None


def exp_log(n):
    """exp(log x) -> x (for x < 0 the original is NaN; see the module docstring)."""
    if n.op == "exp" and n.inputs[0].op == "log":
        return n.inputs[0].inputs[0]
    return None


def log_exp(n):
    """log(exp x) -> x (exact where the original is finite, and finite where it overflowed)."""
    if n.op == "log" and n.inputs[0].op == "exp":
        return n.inputs[0].inputs[0]
    return None


def where_same_branches(n):
    """where(c, a, a) -> a."""
    if n.op == "where" and n.inputs[1] is n.inputs[2]:
        return fit(n.inputs[1], n)
    return None


def where_constant_condition(n):
    """where(true, a, b) -> a, where(false, a, b) -> b."""
    if n.op == "where":
        u = uniform_value(n.inputs[0])
        if isinstance(u, bool):
            return fit(n.inputs[1] if u else n.inputs[2], n)
    return None


# ----------------------------------------------------------------------------- reductions


def reduce_unit_axes(n):
    """sum/max/min over axes that all have size 1 (or over no axis) -> a reshape."""
    if n.op in ("sum", "max", "min"):
        x = n.inputs[0]
        if all(x.shape[a] == 1 for a in n.attrs["axes"]) and x.dtype == n.dtype:
            return x if x.type == n.type else node("reshape", (x,), n, shape=tuple(n.shape))
    return None


def sum_of_broadcast(n):
    """sum over axes of broadcast_to(x) -> x * count, when every summed axis is one
    the broadcast added or stretched (the sum adds `count` copies of x)."""
    if n.op != "sum" or n.inputs[0].op != "broadcast_to":
        return None
    b = n.inputs[0]
    x, S = b.inputs[0], tuple(b.shape)
    axes, lead = n.attrs["axes"], len(S) - b.inputs[0].ndim
    if not axes or any(a >= lead and x.shape[a - lead] != 1 for a in axes):
        return None
    sizes = [S[a] for a in axes]
    if all(isinstance(s, int) for s in sizes):
        count = int(np.prod(sizes, dtype=np.int64))
        y = x if count == 1 else node("mul", (x, const(count, x.dtype, n)), n)
    else:
        y = node("mul", (x, node("numel", (), n, sizes=tuple(sizes), dtype=x.dtype)), n)
    aligned = (1,) * lead + tuple(x.shape)
    if any(aligned[i] != S[i] for i in range(len(S)) if i not in axes):
        # x is also broadcast along a kept axis: broadcast the product there
        y = node("broadcast_to", (y,), n, shape=reduced_shape(S, axes, True))
    if tuple(y.shape) != tuple(n.shape):
        y = node("reshape", (y,), n, shape=tuple(n.shape))
    return y


RULES = [
    cast_same_dtype, neg_neg, exp_log, log_exp,
    mul_by_one, add_zero, sub_zero, zero_sub, div_by_one, mul_by_zero, mul_by_minus_one,
    neg_of_mul_by_neg, neg_into_constant, div_by_constant, pow_special,
    where_same_branches, where_constant_condition,
    reduce_unit_axes, sum_of_broadcast,
]
