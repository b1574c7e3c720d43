"""Indexing with integer tensors, as NumPy's advanced indexing, composed from `take`.

`x[ids]`, `x[:, ids]`, `x[rows, cols]`: the integer tensors (lists and integer arrays
too; a Python int next to them counts as a 0-d index, as in NumPy) broadcast to one
shape B. With one index tensor the result is `take` along its axis. With several,
the first is a `take` and each further one selects along its axis by comparing the
axis position with the index (a one-hot reduction, so its cost is the axis length
per selected element; Theano's `log(p)[arange(n), y]` reads one row per sample).
B replaces the indexed axes where they stand when they are adjacent, else it comes
first (NumPy's rule). An index out of range fails the call (see gather.py); the ids
of the later axes pass through `check_index` so that theirs do too.
"""
from __future__ import annotations

import numpy as np

from ..node import Tensor, shape_error
from . import elementwise as ew
from .gather import check_index, take
from .movement import broadcast_to, getitem, reshape, transpose
from .reduce import sum as rsum


def is_advanced(key) -> bool:
    return any(isinstance(k, (Tensor, list, np.ndarray)) for k in key)


def _as_index(k, x) -> Tensor:
    t = ew.as_tensor(np.asarray(k) if isinstance(k, list) else k)
    if t.dtype == "bool":
        raise TypeError("indexing with a boolean mask is not supported (its result has a data-dependent "
                        "shape); use ng.where")
    if t.dtype not in ("int32", "int64"):
        raise shape_error("getitem", f"index tensors must be integers, got {t.dtype}", x, t)
    return t


def _normalise(x: Tensor, key: tuple) -> list:
    """One entry per axis of x: a slice or an index tensor."""
    if any(k is None for k in key):
        raise TypeError("indexing with tensors together with None is not supported; use ng.expand_dims")
    n_real = sum(1 for k in key if k is not Ellipsis)
    if n_real > x.ndim:
        raise shape_error("getitem", f"too many indices ({n_real}) for a {x.ndim}-d tensor", x)
    if any(k is Ellipsis for k in key):
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (x.ndim - n_real) + key[i + 1:]
    key = tuple(key) + (slice(None),) * (x.ndim - len(key))
    return [k if isinstance(k, slice) else _as_index(k, x) for k in key]


def _is_range_of(ids: Tensor, n) -> bool:
    """ids is arange(n) itself: taking with it changes nothing."""
    return ids.op == "iota" and tuple(ids.shape) == (n,) and ids.attrs["axis"] == 0


def _select(g: Tensor, axis: int, ids: Tensor) -> Tensor:
    """g with `axis` removed: at each point, g's entry at position ids (broadcast over the
    axes before `axis`, which are ids' own shape placed after some leading axes)."""
    n = g.shape[axis]
    size = ew.numel((n,), ids.dtype)
    wrapped = ew.where(ew.less(ids, ew.as_tensor(0, ids)), ew.add(ids, size), ids)
    lead = axis - ids.ndim
    ids_e = reshape(wrapped, (1,) * lead + tuple(ids.shape) + (1,) * (g.ndim - axis))
    pos = ew.iota((1,) * axis + (n,) + (1,) * (g.ndim - axis - 1), axis=axis, dtype=ids.dtype)
    return rsum(ew.where(ew.equal(ids_e, pos), g, ew.as_tensor(0.0, g)), axis)


def advanced_getitem(x: Tensor, key: tuple) -> Tensor:
    entries = _normalise(x, key)
    x = getitem(x, tuple(slice(None) if isinstance(k, Tensor) else k for k in entries))
    axes = [a for a, k in enumerate(entries) if isinstance(k, Tensor)]
    ids = [entries[a] for a in axes]
    if len(ids) == 1:
        return take(x, ids[0], axes[0])
    bshape = ew.broadcast_shapes("getitem", *ids)
    ids = [broadcast_to(t, bshape) for t in ids]
    others = [a for a in range(x.ndim) if a not in axes]
    xt = transpose(x, tuple(others + axes))
    first = ids[0]
    rest = [check_index(t, x.shape[a]) for t, a in zip(ids[1:], axes[1:])]
    lead = len(others)
    g = xt if _is_range_of(first, x.shape[axes[0]]) else take(xt, first, lead)
    for t in rest:
        g = _select(g, lead + len(bshape), t)
    adjacent = axes == list(range(axes[0], axes[0] + len(axes)))
    nb = len(bshape)
    if adjacent:
        before = [i for i, a in enumerate(others) if a < axes[0]]
        after = [i for i, a in enumerate(others) if a > axes[0]]
        perm = before + [lead + j for j in range(nb)] + after
    else:
        perm = [lead + j for j in range(nb)] + list(range(lead))
    return transpose(g, tuple(perm))


