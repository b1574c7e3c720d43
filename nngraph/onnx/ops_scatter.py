"""ONNX index tuples: GatherND (one ng.take of the flattened leading axes), and
ScatterND, ScatterElements (and Scatter, its opset 9-10 name), writes of `updates`
into a copy of `data` built on ng.scatter_add.

Both scatters become one row scatter: the data as [positions, rest] rows, one row id per
update (ScatterND: the flattened index tuple; ScatterElements: the flattened position
of each element with its axis coordinate replaced by the index), and then
- reduction "none": the scattered updates where a row is hit, the data elsewhere
  (with repeated ids the spec leaves the result undefined; here they add up);
- "add": data + scatter_add(updates);
- "max"/"min": data combined with the max/min of the updates hitting each row,
  taken over a one-hot [updates, rows] mask (memory: updates x rows x rest);
- "mul": data times the product of the updates hitting each row (1 where none does),
  over the same mask (ReduceProd's product tree, nngraph/onnx/ops_products.py).
Shapes must be static.
TensorScatter (a key/value cache write at known write indices) is one take from the
cache and the update joined.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..ops import elementwise as ew
from ..ops import gather
from ..ops import movement as mv
from ..ops import reduce as rd
from ..types import Dim, is_float
from .ops_products import reduce_prod
from .registry import converter


def _static(ctx, *tensors):
    for t in tensors:
        if any(isinstance(s, Dim) for s in t.shape):
            raise ctx.error(f"needs static shapes, got {t.type}")


def _scatter_rows(ctx, data2, ids, upd2, reduction):
    """data2: [n, R], ids: [m] row ids (negatives wrapped already), upd2: [m, R] -> [n, R]."""
    n = int(data2.shape[0])
    ids = gather.check_index(ids, n)
    hit = ew.greater(gather.scatter_add(mv.broadcast_to(np.ones((1, 1), np.int32), (upd2.shape[0], 1)), ids, 0, n), 0)
    if reduction in ("none", "add"):
        work = upd2 if upd2.dtype != "bool" else ew.cast(upd2, "int32")
        spread = gather.scatter_add(work, ids, 0, n)
        if reduction == "add":
            return ew.add(data2, ew.cast(spread, data2.dtype))
        return ew.where(hit, ew.cast(spread, data2.dtype), data2)
    mask = mv.expand_dims(ew.cast(F.one_hot(ids, n, "int32"), "bool"), 2)  # [m, n, 1]
    if reduction == "mul":
        one = np.ones((), np.dtype(upd2.dtype))
        return ew.mul(data2, ew.cast(reduce_prod(ew.where(mask, mv.expand_dims(upd2, 1), one), (0,), False),
                                     data2.dtype))
    pick = ew.maximum if reduction == "max" else ew.minimum
    low = _extreme(data2.dtype, reduction == "max")
    candidates = ew.where(mask, mv.expand_dims(upd2, 1), low)  # [m, n, R]
    best = (rd.max if reduction == "max" else rd.min)(candidates, 0)
    return ew.where(hit, pick(data2, best), data2)


def _extreme(dtype, for_max: bool):
    info = np.finfo(np.dtype(dtype)) if is_float(dtype) else np.iinfo(np.dtype(dtype))
    return np.asarray(-np.inf if for_max else np.inf, np.dtype(dtype)) if is_float(dtype) else \
        np.asarray(info.min if for_max else info.max, np.dtype(dtype))


def _reduction(ctx):
    return ctx.refuse_unless("reduction", ("none", "add", "mul", "max", "min"), "none")


@converter("ScatterND", 11, attrs=("reduction",))
def _scatter_nd(ctx):
    data, idx, upd = ctx.t(0), ctx.t(1), ctx.t(2)
    _static(ctx, data, idx, upd)
    k = int(idx.shape[-1])
    dims = [int(s) for s in data.shape[:k]]
    n, rest = int(np.prod(dims)), tuple(data.shape[k:])
    m = int(np.prod(idx.shape[:-1]))
    strides = np.cumprod([1] + dims[::-1][:-1])[::-1].astype(np.int64)
    flat_idx = mv.reshape(ew.cast(idx, "int64"), (m, k))
    wrapped = ew.where(ew.less(flat_idx, 0), ew.add(flat_idx, np.asarray(dims, np.int64)), flat_idx)
    ids = rd.sum(ew.mul(wrapped, strides), 1)
    r = int(np.prod(rest)) if rest else 1
    out = _scatter_rows(ctx, mv.reshape(data, (n, r)), ids, mv.reshape(upd, (m, r)), _reduction(ctx))
    return mv.reshape(out, tuple(data.shape))


def _scatter_elements(ctx):
    data, idx, upd = ctx.t(0), ctx.t(1), ctx.t(2)
    _static(ctx, data, idx, upd)
    axis = int(ctx.attr("axis", 0)) % data.ndim
    shape = [int(s) for s in data.shape]
    strides = np.cumprod([1] + shape[::-1][:-1])[::-1].astype(np.int64)
    coords = np.indices(tuple(int(s) for s in idx.shape), np.int64)
    base = sum(c * s for a, (c, s) in enumerate(zip(coords, strides)) if a != axis)
    idx = ew.cast(idx, "int64")
    idx = ew.where(ew.less(idx, 0), ew.add(idx, shape[axis]), idx)
    ids = mv.reshape(ew.add(ew.mul(idx, int(strides[axis])), base), (-1,))
    out = _scatter_rows(ctx, mv.reshape(data, (-1, 1)), ids, mv.reshape(upd, (-1, 1)), _reduction(ctx))
    return mv.reshape(out, tuple(data.shape))


converter("ScatterElements", 11, attrs=("axis", "reduction"))(_scatter_elements)
converter("Scatter", 9, 10, attrs=("axis",))(_scatter_elements)


@converter("GatherND", 11, attrs=("batch_dims",))
def _gather_nd(ctx):
    """The rows that index tuples name, as one ng.take of the data's leading axes
    flattened (batch_dims leading axes are shared by data and indices: their
    coordinates are prepended to each tuple)."""
    data, idx = ctx.t(0), ctx.t(1)
    _static(ctx, data, idx)
    b, k = int(ctx.attr("batch_dims", 0)), int(idx.shape[-1])
    dims = [int(s) for s in data.shape[:b + k]]
    strides = np.cumprod([1] + dims[::-1][:-1])[::-1].astype(np.int64)
    idx = ew.cast(idx, "int64")
    idx = ew.where(ew.less(idx, 0), ew.add(idx, np.asarray(dims[b:], np.int64)), idx)
    lin = rd.sum(ew.mul(idx, strides[b:]), idx.ndim - 1)  # [batch..., rest of the index shape]
    if b:
        batch = np.indices(tuple(int(s) for s in idx.shape[:-1]), np.int64)[:b]
        lin = ew.add(lin, sum(c * s for c, s in zip(batch, strides[:b])))
    rows = mv.reshape(data, (int(np.prod(dims)),) + tuple(data.shape[b + k:]))
    return gather.take(rows, lin, 0)


@converter("TensorScatter", 24, attrs=("axis", "mode"))
def _tensor_scatter(ctx):
    """A key/value cache write: update's positions j go to write_indices[b] + j along
    `axis` (modulo the cache length when mode="circular") of batch entry b. The write
    indices must be known at import; the result is one take from the cache and the
    update joined along the axis (batch and axis flattened, static sizes)."""
    past, update = ctx.t(0), ctx.t(1)
    mode = ctx.refuse_unless("mode", ("linear", "circular"), "linear")
    axis = int(ctx.attr("axis", -2))
    if not -past.ndim <= axis < past.ndim or axis % past.ndim == 0:
        raise ctx.error(f"axis {axis} must name a sequence axis of {past.type} (not the batch axis 0)")
    axis %= past.ndim
    same = all(a == b for i, (a, b) in enumerate(zip(past.shape, update.shape)) if i != axis)
    if not same or past.ndim != update.ndim or not all(isinstance(s, int) for s in past.shape + update.shape):
        raise ctx.error(f"past_cache {past.type} and update {update.type} must have static shapes that differ only "
                        f"on axis {axis}")
    batch, size, steps = past.shape[0], past.shape[axis], update.shape[axis]
    starts = (np.asarray(ctx.const(2, "write_indices")).reshape(-1).astype(np.int64) if ctx.has(2)
              else np.zeros(batch, np.int64))
    dest = starts[:, None] + np.arange(steps)[None, :]  # [batch, steps]
    if mode == "circular":
        dest %= size
    if starts.size != batch or steps > size or dest.min(initial=0) < 0 or dest.max(initial=0) >= size:
        raise ctx.error(f"write_indices {starts.tolist()} put {steps} positions outside the cache's {size}")
    source = np.tile(np.arange(size), (batch, 1))  # [batch, size]: the cache's own position, or size + j
    for b in range(batch):
        source[b, dest[b]] = size + np.arange(steps)
    perm = [0, axis] + [a for a in range(past.ndim) if a not in (0, axis)]
    joined = mv.concatenate([mv.transpose(past, perm), mv.transpose(update, perm)], 1)
    rows = mv.reshape(joined, (batch * (size + steps),) + tuple(joined.shape[2:]))
    flat = (np.arange(batch)[:, None] * (size + steps) + source).reshape(-1)
    out = mv.reshape(gather.take(rows, flat.astype(np.int64), 0), (batch, size) + tuple(joined.shape[2:]))
    return mv.transpose(out, list(np.argsort(perm)))
