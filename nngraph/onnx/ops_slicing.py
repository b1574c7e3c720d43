"""ONNX Slice, Gather, Split, Pad, Tile, Expand, Range, Compress and ReverseSequence."""
from __future__ import annotations

import numpy as np

from ..ops import elementwise as ew
from ..ops import gather
from ..ops import movement as mv
from ..types import Dim
from .registry import SymShape, converter
from .ops_shape import _known


def _clamp(v: int, size: int, lo: int, hi: int) -> int:
    v = v + size if v < 0 else v
    return min(max(v, lo), hi)


def _slice_specs(ctx):
    """(starts, ends, axes, steps) from attributes (opset < 10) or inputs."""
    if ctx.opset < 10:
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes = ctx.attr("axes", list(range(len(starts))))
        return list(starts), list(ends), list(axes), [1] * len(starts)
    starts = [int(v) for v in ctx.const(1, "starts").reshape(-1)]
    ends = [int(v) for v in ctx.const(2, "ends").reshape(-1)]
    axes = [int(v) for v in ctx.const(3, "axes").reshape(-1)] if ctx.has(3) else list(range(len(starts)))
    steps = [int(v) for v in ctx.const(4, "steps").reshape(-1)] if ctx.has(4) else [1] * len(starts)
    return starts, ends, axes, steps


@converter("Slice", 1, attrs=("starts", "ends", "axes"))
def _slice(ctx):
    starts, ends, axes, steps = _slice_specs(ctx)
    v = ctx.values[0]
    shape = tuple(v.shape)
    spec = [(0, s, 1) for s in shape]
    backward = {}  # axis -> the positions a negative step picks, in order (a take)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = ax + len(shape) if ax < 0 else ax
        size = shape[ax]
        if sp == 0 or (sp < 0 and isinstance(size, Dim)):
            raise ctx.error(f"step {sp} on axis {ax} (size {size}) is not supported")
        if isinstance(size, Dim):
            if st != 0 or en < INT_MAX_ISH:
                raise ctx.error(f"slice {st}:{en} of dynamic axis {ax} ({size}) is not supported; only a full slice")
            continue
        if sp < 0:  # Python's clamping is ONNX's: starts to [0, size-1], ends to [-1, size-1]
            backward[ax] = np.arange(*slice(st, en, sp).indices(size), dtype=np.int64)
            continue
        spec[ax] = (_clamp(st, size, 0, size), max(_clamp(en, size, 0, size), _clamp(st, size, 0, size)), sp)
    if isinstance(v, SymShape):
        b, e, s = spec[0]
        sizes = list(v.sizes)
        return _known([sizes[int(i)] for i in backward[0]] if 0 in backward else sizes[b:e:s])
    out = mv.slice_(ctx.t(0), spec)
    for ax, picked in backward.items():
        out = gather.take(out, picked, ax)
    return out


INT_MAX_ISH = 2**31 - 1


@converter("Gather", 1, attrs=("axis",))
def _gather(ctx):
    v, axis = ctx.values[0], int(ctx.attr("axis", 0))
    if isinstance(v, SymShape):
        idx = ctx.const(1, "indices")
        picked = [v.sizes[int(i)] for i in idx.reshape(-1)]
        if idx.ndim == 0:
            return np.asarray(picked[0], np.int64) if isinstance(picked[0], int) else SymShape(tuple(picked), True)
        return _known(picked)
    x = ctx.t(0)
    if x.ndim == 0:
        raise ctx.error(f"cannot gather from a 0-d tensor {x.type}")
    axis = axis + x.ndim if axis < 0 else axis
    idx = ctx.values[1]
    if isinstance(idx, np.ndarray):
        _check_known_indices(ctx, x, axis, idx)
    return gather.take(x, ctx.t(1), axis)


def _check_known_indices(ctx, x, axis, idx):
    """Indices known at import are checked at import (ONNX makes an index outside
    [-n, n) an error); indices computed at run time are checked by every call
    (ng.take's index guard raises InputError)."""
    size = x.shape[axis]
    if isinstance(size, Dim):
        return
    flat = idx.reshape(-1).astype(np.int64)
    if np.any((flat < -size) | (flat >= size)):
        raise ctx.error(f"indices {flat.tolist()} are out of range for axis {axis} of size {size}")


@converter("Expand", 8)
def _expand(ctx):
    """Bidirectional broadcast of x with the given shape."""
    x, sizes = ctx.t(0), list(ctx.shape_value(1))
    nd = max(x.ndim, len(sizes))
    a = [1] * (nd - x.ndim) + list(x.shape)
    b = [1] * (nd - len(sizes)) + sizes
    out = []
    for i, (p, q) in enumerate(zip(a, b)):
        if p == 1:
            out.append(q)
        elif q == 1 or p == q:
            out.append(p)
        else:
            raise ctx.error(f"cannot broadcast {x.type} to shape {sizes}: axis {i} has {p} and {q}")
    return mv.broadcast_to(mv.reshape(x, tuple(a)) if nd > x.ndim else x, tuple(out))


@converter("Split", 2, attrs=("axis", "split", "num_outputs"))
def _split(ctx):
    x = ctx.t(0)
    axis = int(ctx.attr("axis", 0))
    axis = axis + x.ndim if axis < 0 else axis
    size = x.shape[axis]
    if isinstance(size, Dim):
        raise ctx.error(f"split of dynamic axis {axis} of {x.type} is not supported")
    n = len(ctx.node.output)
    if ctx.opset >= 13 and ctx.has(1):
        parts = [int(v) for v in ctx.const(1, "split").reshape(-1)]
    elif ctx.attr("split") is not None:
        parts = [int(v) for v in ctx.attr("split")]
    else:
        k = -(-size // n)
        parts = [min(k, size - i * k) for i in range(n)]
    if sum(parts) != size or len(parts) != n:
        raise ctx.error(f"split sizes {parts} do not cover axis {axis} of {x.type} with {n} outputs")
    full, off, outs = [(0, s, 1) for s in x.shape], 0, []
    for p in parts:
        outs.append(mv.slice_(x, full[:axis] + [(off, off + p, 1)] + full[axis + 1:]))
        off += p
    return outs


@converter("Pad", 2, attrs=("mode", "pads", "value"))
def _pad(ctx):
    mode = ctx.refuse_unless("mode", ("constant", "edge", "reflect", "wrap"), "constant")
    x = ctx.t(0)
    if ctx.opset < 11:
        pads, value = [int(p) for p in ctx.attr("pads")], float(ctx.attr("value", 0.0))
        axes = list(range(x.ndim))
    else:
        pads = [int(p) for p in ctx.const(1, "pads").reshape(-1)]
        value = 0.0
        if ctx.has(2):
            v = ctx.values[2]
            value = float(ctx.const(2).reshape(-1)[0]) if isinstance(v, np.ndarray) else ctx.t(2)
        axes = [int(a) for a in ctx.const(3, "axes").reshape(-1)] if ctx.has(3) else list(range(x.ndim))
    axes = [a + x.ndim if a < 0 else a for a in axes]
    k = len(axes)
    if len(pads) != 2 * k:
        raise ctx.error(f"pads {pads} need 2 entries per padded axis ({k} axes)")
    if min(pads, default=0) < 0:
        raise ctx.error(f"negative pads {pads} are not supported")
    widths = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        widths[a] = (pads[i], pads[i + k])
    if mode != "constant":
        return _pad_by_gather(ctx, x, widths, mode)
    if isinstance(value, float):
        return mv.pad(x, widths, value)
    # a fill value computed at run time: pad with zeros, then fill the border
    inside = mv.pad(mv.broadcast_to(np.asarray(True), x.shape), widths, 0.0)
    return ew.where(inside, mv.pad(x, widths, 0.0), mv.reshape(value, ()) if value.ndim else value)


def _pad_by_gather(ctx, x, widths, mode):
    """edge, reflect and wrap padding: per padded axis, one take of the rows NumPy's
    np.pad(arange(n), widths, mode) names (the same modes as ONNX's)."""
    for axis, (lo, hi) in enumerate(widths):
        if not (lo or hi):
            continue
        n = x.shape[axis]
        if isinstance(n, Dim):
            raise ctx.error(f"mode={mode!r} padding of dynamic axis {axis} of {x.type} is not supported")
        if mode == "reflect" and max(lo, hi) >= n:
            raise ctx.error(f"mode='reflect' pads {lo, hi} of axis {axis} must be smaller than its size {n}")
        rows = np.pad(np.arange(n, dtype=np.int64), (lo, hi), mode="reflect" if mode == "reflect" else mode)
        x = gather.take(x, ew.constant(rows), axis)
    return x


@converter("Tile", 6)
def _tile(ctx):
    x = ctx.t(0)
    reps = [int(r) for r in ctx.const(1, "repeats").reshape(-1)]
    if len(reps) != x.ndim:
        raise ctx.error(f"repeats {reps} need one entry per axis of {x.type}")
    for a, r in enumerate(reps):
        if r != 1:
            x = mv.concatenate([x] * r, a) if r > 1 else mv.slice_(x, [(0, 0, 1) if i == a else (0, s, 1)
                                                                        for i, s in enumerate(x.shape)])
    return x


@converter("Range", 11)
def _range(ctx):
    """Known bounds: the values at import. A limit that is one dynamic size (Shape ->
    Gather of a 0-d index, as ng.onnx.export writes an iota over a dynamic axis) from 0
    by 1: an iota over that size."""
    limit = ctx.values[1] if ctx.has(1) else None
    if isinstance(limit, SymShape) and limit.scalar and isinstance(limit.sizes[0], Dim):
        start, delta = ctx.const(0, "start"), ctx.const(2, "delta")
        if start.reshape(()) != 0 or delta.reshape(()) != 1:
            raise ctx.error(f"a Range to the dynamic size {limit.sizes[0]} must start at 0 by steps of 1, "
                            f"got start {start.reshape(())} and delta {delta.reshape(())}")
        return ew.iota((limit.sizes[0],), 0, str(start.dtype))
    start, limit, delta = (ctx.const(i, n) for i, n in enumerate(("start", "limit", "delta")))
    return np.arange(start.reshape(()), limit.reshape(()), delta.reshape(()), dtype=start.dtype)


@converter("Compress", 9, attrs=("axis",))
def _compress(ctx):
    """The condition must be known at import (its count of true entries is the output's
    size): a take of the selected positions, along `axis` or of the flattened input."""
    x = ctx.t(0)
    keep = np.flatnonzero(np.asarray(ctx.const(1, "condition (the output size depends on it)")).reshape(-1))
    axis = ctx.attr("axis")
    if axis is None:
        x, axis = mv.reshape(x, (-1,)), 0
    if not -x.ndim <= axis < x.ndim:
        raise ctx.error(f"attribute axis={axis} is out of range for input {x.type}")
    axis %= x.ndim
    n = x.shape[axis]
    if keep.size and isinstance(n, int) and keep[-1] >= n:
        raise ctx.error(f"condition selects position {int(keep[-1])} of an axis of size {n}")
    return gather.take(x, keep.astype(np.int64), axis)


@converter("ReverseSequence", 10, attrs=("batch_axis", "time_axis"))
def _reverse_sequence(ctx):
    """sequence_lens must be known at import: one take over the batch and time axes
    (flattened, static sizes) with the reversed positions."""
    x = ctx.t(0)
    batch_axis, time_axis = int(ctx.attr("batch_axis", 1)), int(ctx.attr("time_axis", 0))
    if {batch_axis, time_axis} != {0, 1} or x.ndim < 2:
        raise ctx.error(f"batch_axis={batch_axis} and time_axis={time_axis} must be 0 and 1 (input {x.type})")
    lens = np.asarray(ctx.const(1, "sequence_lens")).reshape(-1).astype(np.int64)
    if not all(isinstance(s, int) for s in x.shape[:2]):
        raise ctx.error(f"the batch and time axes must have static sizes, input has {x.type}")
    batch, steps = x.shape[batch_axis], x.shape[time_axis]
    if lens.size != batch or lens.min(initial=0) < 0 or lens.max(initial=0) > steps:
        raise ctx.error(f"sequence_lens {lens.tolist()} must give one length in 0..{steps} per batch entry ({batch})")
    t = np.arange(steps)[None, :]
    src_t = np.where(t < lens[:, None], lens[:, None] - 1 - t, t)  # [batch, time]
    b = np.broadcast_to(np.arange(batch)[:, None], src_t.shape)
    flat = b * steps + src_t if batch_axis == 0 else src_t * batch + b
    if batch_axis == 1:
        flat = flat.T
    rows = mv.reshape(x, (x.shape[0] * x.shape[1],) + tuple(x.shape[2:]))
    return mv.reshape(gather.take(rows, flat.reshape(-1).astype(np.int64), 0), tuple(x.shape))
