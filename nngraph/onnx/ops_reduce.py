"""ONNX reductions (Reduce*, ArgMax/ArgMin), composed from sum/max/min (ReduceProd's
product tree: nngraph/onnx/ops_products.py)."""
from __future__ import annotations

import functools

import numpy as np

from .. import functional as F
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..ops import reduce as rd
from .ops_products import reduce_prod
from .registry import converter

_REDUCE = {
    "ReduceSum": (13, rd.sum),
    "ReduceMean": (18, rd.mean),
    "ReduceMax": (18, rd.max),
    "ReduceMin": (18, rd.min),
    "ReduceSumSquare": (18, lambda x, a, k: rd.sum(ew.mul(x, x), a, k)),
    "ReduceL1": (18, lambda x, a, k: rd.sum(ew.abs(x), a, k)),
    "ReduceL2": (18, lambda x, a, k: ew.sqrt(rd.sum(ew.mul(x, x), a, k))),
    "ReduceLogSum": (18, lambda x, a, k: ew.log(rd.sum(x, a, k))),
    "ReduceLogSumExp": (18, lambda x, a, k: F.logsumexp(x, a, k)),
    "ReduceProd": (18, reduce_prod),
}


def _reduce_converter(axes_input_since, fn, ctx):
    """Axes from the attribute before `axes_input_since`, from input 1 after; no axes
    means all of them, unless noop_with_empty_axes asks for the identity."""
    x = ctx.t(0)
    if ctx.opset < axes_input_since:
        axes = ctx.attr("axes")
    else:
        axes = [int(a) for a in ctx.const(1, "axes").reshape(-1)] if ctx.has(1) else None
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            return x
        axes = None
    else:
        axes = tuple(int(a) for a in axes)
    keep = bool(ctx.attr("keepdims", 1))
    if x.dtype == "bool" and ctx.op_type not in ("ReduceMax", "ReduceMin"):
        raise ctx.error(f"cannot reduce a bool tensor {x.type}")
    if ctx.op_type in _EXTREMA:
        return _extremum(ctx.op_type, x, axes, keep)
    empty = _empty_result(ctx, x, axes, keep)
    if empty is not None:
        return empty
    if x.dtype == "bool":
        return ew.cast(fn(ew.cast(x, "int32"), axes, keep), "bool")
    return fn(x, axes, keep)


# ReduceMax/ReduceMin over an empty axis are the identity (-inf or the integer minimum
# for max; +inf or the maximum for min), also where the axis is only known at run time:
# at every opset (the spec says so from ReduceMax-1 on, ONNX's reference evaluator and
# onnxruntime 1.32 give it at opsets 11, 13, 17 and 18 alike).
_EXTREMA = {"ReduceMax": rd.max, "ReduceMin": rd.min}


def _extremum(op_type, x, axes, keep):
    """ReduceMax/ReduceMin with the identity over an empty axis. A bool tensor reduces as
    int32 clamped back into [0, 1]: the integer identity (INT_MIN for max) cast to bool
    would be True, where the max of no truth values is False (and their min True)."""
    reduce = _EXTREMA[op_type]
    if x.dtype != "bool":
        return reduce(x, axes, keep, empty_identity=True)
    r = reduce(ew.cast(x, "int32"), axes, keep, empty_identity=True)
    return ew.cast(ew.minimum(ew.maximum(r, 0), 1), "bool")


_EMPTY_VALUE = {"ReduceLogSumExp": -np.inf, "ReduceLogSum": -np.inf}


def _empty_result(ctx, x, axes, keep):
    """A log-sum(-exp) over no elements: -inf (the extreme integers for integer inputs),
    computed at import."""
    reduced = range(x.ndim) if axes is None else [a % x.ndim for a in axes]
    if ctx.op_type not in _EMPTY_VALUE or not any(x.shape[a] == 0 for a in reduced):
        return None
    shape = rd.reduced_shape(x.shape, tuple(reduced), keep)
    fill = _EMPTY_VALUE[ctx.op_type]
    if x.dtype in ("int32", "int64"):
        fill = np.iinfo(np.dtype(x.dtype)).min
    return mv.broadcast_to(np.asarray(fill, np.dtype(x.dtype)), shape)


for _op, (_since, _fn) in _REDUCE.items():
    converter(_op, 1, attrs=("axes", "keepdims", "noop_with_empty_axes"))(
        functools.partial(_reduce_converter, _since, _fn))


def _arg_converter(negate, ctx):
    """The first index of the max (of -x for ArgMin); with select_last_index=1, the
    first index in the axis reversed (slices joined back to front), counted back."""
    x = ctx.t(0)
    if negate:
        x = ew.neg(x if x.dtype != "bool" else ew.cast(x, "int32"))
    axis = int(ctx.attr("axis", 0)) % x.ndim
    keep = bool(ctx.attr("keepdims", 1))
    if not ctx.attr("select_last_index", 0):
        return rd.argmax(x, axis, keep)
    n = x.shape[axis]
    if not isinstance(n, int):
        raise ctx.error(f"select_last_index=1 needs a static axis, input has {x.type}")
    full = [(0, s, 1) for s in x.shape]
    flipped = mv.concatenate([mv.slice_(x, full[:axis] + [(i, i + 1, 1)] + full[axis + 1:])
                              for i in reversed(range(n))], axis)
    return ew.sub(np.asarray(n - 1, np.int64), rd.argmax(flipped, axis, keep))


converter("ArgMax", 1, attrs=("axis", "keepdims", "select_last_index"))(functools.partial(_arg_converter, False))
converter("ArgMin", 1, attrs=("axis", "keepdims", "select_last_index"))(functools.partial(_arg_converter, True))
