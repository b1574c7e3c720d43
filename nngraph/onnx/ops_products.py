"""ONNX products and orderings composed from nngraph primitives: ReduceProd's value
(registered with the other reductions, nngraph/onnx/ops_reduce.py) and CumProd
(products along an axis), TopK (the k largest or smallest along an axis), Det
(cofactor expansion of matrices up to MAX_DET x MAX_DET).

nngraph has no product reduction and no sort, so each is written with ops it has,
over axes whose size is known at import (a dynamic size is refused by name):

- a product along an axis of n elements is a tree of ceil(log2 n) elementwise
  multiplications (halves multiplied pairwise, an odd element carried), so integers
  stay exact, zeros and signs need no special case and the gradient is the product
  rule; a cumulative product is the log-step scan (y *= y shifted by 1, 2, 4, ...).
- TopK takes k rounds of argmax (the first index of the largest wins ties, ONNX's
  rule), each round masking the element it took with the lowest value of the dtype,
  so values come out sorted and the graph grows with k (refused above MAX_TOPK). A
  -inf (or the int minimum) that must be picked after the masked ones may repeat an
  index; NaN is not ordered as ONNX orders it.
"""
from __future__ import annotations

import numpy as np

from ..ops import elementwise as ew
from ..ops import movement as mv
from ..ops import reduce as rd
from ..types import is_float
from .registry import converter

MAX_TOPK = 256   # rounds of argmax TopK unrolls into the graph


def _static_size(ctx, x, axis, what):
    n = x.shape[axis]
    if not isinstance(n, int):
        raise ctx.error(f"{what} needs a static size along axis {axis}, input has {x.type}")
    return n


def _part(x, axis, start, stop):
    return mv.slice_(x, [(start, stop, 1) if a == axis else (0, s, 1) for a, s in enumerate(x.shape)])


def _ones(x, axis, n):
    shape = tuple(n if a == axis else s for a, s in enumerate(x.shape))
    return mv.broadcast_to(np.ones((), np.dtype(x.dtype)), shape)


def product_along(x, axis):
    """x's product over `axis` (kept, size 1): halves multiplied until one is left."""
    n = x.shape[axis]
    if n == 0:
        return _ones(x, axis, 1)
    while n > 1:
        half = n // 2
        y = ew.mul(_part(x, axis, 0, half), _part(x, axis, half, 2 * half))
        x = mv.concatenate([y, _part(x, axis, 2 * half, n)], axis) if n % 2 else y
        n = (n + 1) // 2
    return x


def reduce_prod(x, axes, keepdims):
    """ReduceProd's value (nngraph/onnx/ops_reduce.py reads its inputs and attributes):
    x's product over `axes` (None: all), each of a static size."""
    axes = sorted({a % x.ndim for a in (range(x.ndim) if axes is None else axes)})
    for a in axes:
        if not isinstance(x.shape[a], int):
            raise ValueError(f"ReduceProd needs a static size along axis {a}, input has {x.type}")
        x = product_along(x, a)
    return x if keepdims else mv.reshape(x, tuple(s for a, s in enumerate(x.shape) if a not in axes))


def _shifted(x, axis, d, n):
    """x moved d places along axis, ones in the d places it leaves."""
    return mv.concatenate([_ones(x, axis, d), _part(x, axis, 0, n - d)], axis)


def _reversed(x, axis, n):
    return mv.concatenate([_part(x, axis, i, i + 1) for i in reversed(range(n))], axis) if n > 1 else x


@converter("CumProd", 26, attrs=("exclusive", "reverse"))
def _cumprod(ctx):
    x = ctx.t(0)
    if x.dtype == "bool":
        raise ctx.error(f"cannot multiply a bool tensor {x.type}")
    axis = int(ctx.const(1, "axis").reshape(())) % x.ndim
    n = _static_size(ctx, x, axis, "CumProd")
    rev = bool(ctx.attr("reverse", 0))
    y = _reversed(x, axis, n) if rev else x
    if n and ctx.attr("exclusive", 0):
        y = _shifted(y, axis, 1, n)
    d = 1
    while d < n:
        y = ew.mul(y, _shifted(y, axis, d, n))
        d *= 2
    return _reversed(y, axis, n) if rev else y


def _lowest(dtype):
    return -np.inf if is_float(dtype) else np.iinfo(np.dtype(dtype)).min


@converter("TopK", 10, attrs=("axis", "largest", "sorted"))
def _topk(ctx):
    """(values, int64 indices) of the k largest (largest=1) or smallest along axis, in
    order, the lower index first among equal values; sorted=0 allows any order, and
    this one is sorted. k comes from input 1 and must be known at import."""
    x = ctx.t(0)
    axis = int(ctx.attr("axis", -1)) % x.ndim
    k = int(np.asarray(ctx.const(1, "K")).reshape(-1)[0])
    n = _static_size(ctx, x, axis, "TopK")
    if not 0 <= k <= n:
        raise ctx.error(f"K = {k} must be in [0, {n}] (the size of axis {axis} of {x.type})")
    if k > MAX_TOPK:
        raise ctx.error(f"K = {k}: TopK is unrolled into {MAX_TOPK} rounds at most")
    if x.dtype == "bool":
        raise ctx.error(f"cannot order a bool tensor {x.type}")
    largest = bool(ctx.attr("largest", 1))
    if not k:
        empty = tuple(0 if a == axis else s for a, s in enumerate(x.shape))
        return [mv.broadcast_to(np.zeros((), np.dtype(x.dtype)), empty),
                mv.broadcast_to(np.zeros((), np.int64), empty)][:max(ctx.n_outputs, 1)]
    key = x if largest else ew.neg(x)
    ids = ew.iota(tuple(x.shape), axis, "int64")
    lowest = np.asarray(_lowest(x.dtype), np.dtype(x.dtype))
    zero = ew.zeros_like(x)
    values, indices = [], []
    for _ in range(k):
        at = rd.argmax(key, axis, keepdims=True)
        hit = ew.equal(ids, at)
        values.append(rd.sum(ew.where(hit, x, zero), axis, keepdims=True))   # x at the index, exactly
        indices.append(at)
        key = ew.where(hit, lowest, key)
    return [mv.concatenate(values, axis), mv.concatenate(indices, axis)][:max(ctx.n_outputs, 1)]


MAX_DET = 4  # the largest matrix Det expands by cofactors (n! products)


def _entry(a, i: int, j: int):
    """a[..., i, j] of a [..., n, n] tensor."""
    spec = [(0, s, 1) for s in a.shape[:-2]] + [(i, i + 1, 1), (j, j + 1, 1)]
    return mv.squeeze(mv.slice_(a, spec), (a.ndim - 2, a.ndim - 1))


def _minor(a, j: int):
    """a without its first row and column j."""
    n, lead = a.shape[-1], [(0, s, 1) for s in a.shape[:-2]]
    parts = [mv.slice_(a, lead + [(1, n, 1), (lo, hi, 1)]) for lo, hi in ((0, j), (j + 1, n)) if hi > lo]
    return parts[0] if len(parts) == 1 else mv.concatenate(parts, a.ndim - 1)


def _cofactor_det(a):
    n = a.shape[-1]
    if n == 1:
        return _entry(a, 0, 0)
    total = None
    for j in range(n):
        term = ew.mul(_entry(a, 0, j), _cofactor_det(_minor(a, j)))
        total = term if total is None else (ew.add(total, term) if j % 2 == 0 else ew.sub(total, term))
    return total


@converter("Det", 11)
def _det(ctx):
    """The determinant of [..., n, n] float matrices by cofactor expansion along the first
    row (n! products, exact in structure and differentiable), for n <= MAX_DET."""
    a = ctx.t(0)
    n = a.shape[-1] if a.ndim >= 2 else None
    if not is_float(a.dtype) or a.ndim < 2 or a.shape[-2] != n or not isinstance(n, int):
        raise ctx.error(f"input must be float square matrices [..., n, n] of static n, got {a.type}")
    if not 1 <= n <= MAX_DET:
        raise ctx.error(f"{n}x{n} determinants are not supported (cofactor expansion up to {MAX_DET}x{MAX_DET})")
    return _cofactor_det(a)
