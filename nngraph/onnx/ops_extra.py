"""More ONNX operators composed from nngraph primitives: CastLike, Mod, the two
losses (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss), RMSNormalization,
Trilu, CumSum, Hardmax, LpNormalization, Swish, IsInf, IsNaN, EyeLike, Floor, Ceil,
Round, GatherElements."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..ops import reduce as rd
from ..types import is_float
from .registry import converter


@converter("CastLike", 15, attrs=("saturate", "round_mode"))
def _cast_like(ctx):
    """`saturate` and `round_mode` only concern float8 targets, which are refused by type."""
    return ew.cast(ctx.t(0), ctx.t(1).dtype)


def _trunc(q):
    """Round toward zero (through int64: exact for |q| < 2**53)."""
    return ew.cast(ew.cast(q, "int64"), q.dtype)


@converter("Mod", 10, attrs=("fmod",))
def _mod(ctx):
    """fmod=1: C's fmod (the sign of the dividend); fmod=0: Python's % (the sign of
    the divisor); both the core ops of nngraph/semantics.py's rule."""
    a, b = ctx.t(0), ctx.t(1)
    if b.dtype != a.dtype:
        b = ew.cast(b, a.dtype)
    return (ew.fmod if ctx.attr("fmod", 0) else ew.mod)(a, b)


def _nll(ctx, logp, target, weight):
    """-logp[n, target[n, ...], ...] * weight[target], reduced as `reduction` says."""
    reduction = ctx.refuse_unless("reduction", ("none", "sum", "mean"), "mean")
    c = logp.shape[1]
    ignore = ctx.attr("ignore_index")
    safe = target
    valid = None
    if ignore is not None:
        valid = ew.not_equal(target, np.asarray(ignore, np.dtype(target.dtype)))
        safe = ew.where(valid, target, ew.zeros_like(target))
    onehot = mv.transpose(F.one_hot(safe, c, logp.dtype), (0, target.ndim) + tuple(range(1, target.ndim)))
    picked = rd.sum(ew.mul(logp, onehot), 1)
    w = rd.sum(ew.mul(mv.reshape(weight, (1, c) + (1,) * (target.ndim - 1)), onehot), 1) \
        if weight is not None else ew.ones_like(picked)
    if valid is not None:
        w = ew.where(valid, w, ew.zeros_like(w))
    loss = ew.neg(ew.mul(picked, w))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return rd.sum(loss)
    return ew.div(rd.sum(loss), rd.sum(w))


@converter("NegativeLogLikelihoodLoss", 12, attrs=("reduction", "ignore_index"))
def _nll_loss(ctx):
    return _nll(ctx, ctx.t(0), ctx.t(1), ctx.t(2) if ctx.has(2) else None)


@converter("SoftmaxCrossEntropyLoss", 12, attrs=("reduction", "ignore_index"))
def _sce_loss(ctx):
    logp = F.log_softmax(ctx.t(0), 1)
    loss = _nll(ctx, logp, ctx.t(1), ctx.t(2) if ctx.has(2) else None)
    return [loss, logp][:max(ctx.n_outputs, 1)]


@converter("RMSNormalization", 23, attrs=("axis", "epsilon", "stash_type"))
def _rms_norm(ctx):
    ctx.refuse_unless("stash_type", (1,), 1)
    x = ctx.t(0)
    axis = int(ctx.attr("axis", -1)) % x.ndim
    ms = rd.mean(ew.mul(x, x), tuple(range(axis, x.ndim)), keepdims=True)
    y = ew.mul(x, ew.rsqrt(ew.add(ms, float(ctx.attr("epsilon", 1e-5)))))
    return ew.mul(y, ctx.t(1))


@converter("Trilu", 14, attrs=("upper",))
def _trilu(ctx):
    x = ctx.t(0)
    k = int(ctx.const(1, "k").reshape(())) if ctx.has(1) else 0
    rows, cols = x.shape[-2:]
    i = ew.iota((rows, cols), 0, "int64")
    j = ew.iota((rows, cols), 1, "int64")
    diff = ew.sub(j, i)
    keep = ew.greater_equal(diff, np.asarray(k, np.int64)) if ctx.attr("upper", 1) else \
        ew.less_equal(diff, np.asarray(k, np.int64))
    return ew.where(keep, x, ew.zeros_like(x))


@converter("CumSum", 11, attrs=("exclusive", "reverse"))
def _cumsum(ctx):
    """A product with a triangular matrix of ones along the axis (integers in float64)."""
    x = ctx.t(0)
    axis = int(ctx.const(1, "axis").reshape(())) % x.ndim
    n = x.shape[axis]
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    rev, excl = bool(ctx.attr("reverse", 0)), bool(ctx.attr("exclusive", 0))
    tri = (i >= j) if rev else (i <= j)
    if excl:
        tri &= i != j
    dt = x.dtype if is_float(x.dtype) else "float64"
    perm = tuple(a for a in range(x.ndim) if a != axis) + (axis,)
    moved = mv.transpose(ew.cast(x, dt), perm)
    y = moved @ ew.constant(tri.astype(np.dtype(dt)))
    back = tuple(int(v) for v in np.argsort(perm))
    return ew.cast(mv.transpose(y, back), x.dtype)


@converter("Hardmax", 13, attrs=("axis",))
def _hardmax(ctx):
    x = ctx.t(0)
    axis = int(ctx.attr("axis", -1)) % x.ndim
    idx = rd.argmax(x, axis, keepdims=True)
    ids = ew.iota(tuple(x.shape), axis, "int64")
    return ew.cast(ew.equal(ids, idx), x.dtype)


@converter("LpNormalization", 1, attrs=("axis", "p"))
def _lp_norm(ctx):
    x = ctx.t(0)
    axis, p = int(ctx.attr("axis", -1)), int(ctx.refuse_unless("p", (1, 2), 2))
    norm = rd.sum(ew.abs(x), axis, keepdims=True) if p == 1 else \
        ew.sqrt(rd.sum(ew.mul(x, x), axis, keepdims=True))
    return ew.where(ew.equal(norm, 0.0), ew.zeros_like(x), ew.div(x, norm))


@converter("Swish", 24, attrs=("alpha",))
def _swish(ctx):
    x = ctx.t(0)
    return ew.mul(x, ew.sigmoid(ew.mul(x, float(ctx.attr("alpha", 1.0)))))


@converter("IsNaN", 9)
def _isnan(ctx):
    x = ctx.t(0)
    return ew.not_equal(x, x)


@converter("IsInf", 10, attrs=("detect_negative", "detect_positive"))
def _isinf(ctx):
    x = ctx.t(0)
    pos = ew.equal(x, np.asarray(np.inf, np.dtype(x.dtype)))
    neg = ew.equal(x, np.asarray(-np.inf, np.dtype(x.dtype)))
    dp, dn = ctx.attr("detect_positive", 1), ctx.attr("detect_negative", 1)
    if dp and dn:
        return ew.logical_or(pos, neg)
    if dp:
        return pos
    return neg if dn else ew.logical_and(pos, neg)


@converter("EyeLike", 9, attrs=("dtype", "k"))
def _eye_like(ctx):
    from .dtypes import to_nngraph
    x = ctx.values[0]
    dt = to_nngraph(ctx.attr("dtype"), "attribute dtype", ctx.error) if ctx.attr("dtype") is not None else x.dtype
    rows, cols = x.shape
    return np.eye(rows, cols, int(ctx.attr("k", 0)), dtype=np.dtype(dt))


def floor(x):
    """floor through int64 (exact for |x| < 2**53)."""
    t = _trunc(x)
    return ew.where(ew.greater(t, x), ew.sub(t, 1.0), t)


@converter("Floor", 6)
def _floor_conv(ctx):
    return floor(ctx.t(0))


@converter("Ceil", 6)
def _ceil_conv(ctx):
    return ew.neg(floor(ew.neg(ctx.t(0))))


@converter("Round", 11)
def _round(ctx):
    """To the nearest integer, halves to the even one (as NumPy and ONNX)."""
    x = ctx.t(0)
    return round_half_even(x) if is_float(x.dtype) else x


def round_half_even(x):
    """A float tensor rounded to the nearest integer, halves to the even one."""
    low = floor(x)
    frac = ew.sub(x, low)
    odd = ew.sub(low, ew.mul(floor(ew.mul(low, 0.5)), 2.0))  # 1 where low is odd
    up = ew.logical_or(ew.greater(frac, 0.5), ew.logical_and(ew.equal(frac, 0.5), ew.equal(odd, 1.0)))
    return ew.where(up, ew.add(low, 1.0), low)


@converter("GatherElements", 11, attrs=("axis",))
def _gather_elements(ctx):
    """out[p] = data[p with axis -> idx[p]]: a one-hot of idx along a new last axis,
    times data (cut to idx's sizes, axis moved last), summed over that axis. The
    gathered axis must be static; another may be dynamic where both share its size."""
    data, idx = ctx.t(0), ctx.t(1)
    axis = int(ctx.attr("axis", 0)) % data.ndim
    n = data.shape[axis]
    if not isinstance(n, int) or not all(isinstance(i, int) and isinstance(d, int) or (i == d and a != axis)
                                         for a, (i, d) in enumerate(zip(idx.shape, data.shape))):
        raise ctx.error(f"needs a static axis {axis} and other sizes static or shared, got {data.type} "
                        f"and {idx.type}")
    cut = mv.slice_(data, [(0, n, 1) if a == axis else (0, s, 1) for a, s in enumerate(idx.shape)])
    perm = tuple(a for a in range(data.ndim) if a != axis) + (axis,)
    rows = mv.expand_dims(mv.transpose(cut, perm), axis)
    idx = ew.where(ew.less(idx, 0), ew.add(idx, n), idx)
    work = data.dtype if data.dtype != "bool" else "int32"
    picked = rd.sum(ew.mul(F.one_hot(idx, n, work), ew.cast(rows, work)), -1)
    return ew.cast(picked, data.dtype)
