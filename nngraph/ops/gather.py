"""Gather (`take`) and its transpose (`scatter_add`); `arange`.

``take(x, ids, axis)`` is a primitive of kind "index": out[p, i..., q] = x[p, ids[i...], q],
NumPy's ``take``. Negative ids count from the end (NumPy's rule), so the valid range
of an id is [-n, n) for n = x.shape[axis]. An id outside that range never reads
outside the array: the reference and every backend clamp it to the nearest valid
row, and `ng.compile` adds a check that makes such a call raise ``InputError``
before any parameter changes (nngraph/index_guards.py).

``scatter_add(g, ids, axis, n)`` is take's vjp in x, a primitive of kind "special":
out[p, v, q] = sum of g[p, i..., q] over the ids equal to v (repeated ids add up,
out-of-range ids are dropped). It lowers to a kernel of accumulating stores
(passes/lower/gather.py), so its cost is the size of g, not n times it; its vjp
is a take.
"""
from __future__ import annotations

import numpy as np

from ..node import Op, Tensor, make, register, shape_error
from ..sizes import same_shape
from ..types import Dim, TensorType, as_size, is_int
from . import elementwise as ew


def wrap_and_clamp(ids: np.ndarray, n: int) -> np.ndarray:
    """NumPy's negative ids made positive, then any id still outside [0, n) clamped into it."""
    ids = ids.astype(np.int64, copy=False)
    ids = np.where(ids < 0, ids + n, ids)
    return np.clip(ids, 0, max(n - 1, 0))


def _take_infer(inputs, attrs):
    x, ids = inputs
    ax = attrs["axis"]
    if not is_int(ids.dtype):
        raise shape_error("take", f"indices must be int32 or int64, got {ids.dtype}", x, ids)
    if not 0 <= ax < x.ndim:
        raise shape_error("take", f"axis {ax} is out of range for a {x.ndim}-d tensor", x, ids)
    if x.shape[ax] == 0:
        raise shape_error("take", f"cannot take from axis {ax} of size 0", x, ids)
    return TensorType(x.dtype, tuple(x.shape[:ax]) + tuple(ids.shape) + tuple(x.shape[ax + 1:]))


def _take_ref(ctx, x, ids):
    ax = ctx.attrs["axis"]
    return np.take(x, wrap_and_clamp(ids, x.shape[ax]), axis=ax)


def _take_vjp(n, g, needs):
    """A scatter-add of g on ids marked by check_index: a gradient computed without the
    forward take (dead, or in another loop) still fails the call on a bad id."""
    if not needs[0]:
        return None, None
    x, ids = n.inputs
    size = x.shape[n.attrs["axis"]]
    checked = make("check_index", (ids,), where=n.where, size=size)
    return scatter_add(g, checked, n.attrs["axis"], size), None


register(Op("take", "index", _take_infer, _take_ref, _take_vjp,
            doc="gather along `axis` with integer ids of any shape (NumPy's take); "
                "ids outside [-n, n) read the nearest row and fail the call's index check"))


def _check_infer(inputs, attrs):
    (ids,) = inputs
    if not is_int(ids.dtype):
        raise shape_error("check_index", f"indices must be int32 or int64, got {ids.dtype}", ids)
    return ids.type


register(Op("check_index", "index", _check_infer, lambda ctx, ids: ids.copy(), lambda n, g, needs: (None,),
            nondiff=True,
            doc="the ids unchanged; ng.compile makes a call fail when one is outside [-size, size)"))


def check_index(ids, size) -> Tensor:
    """ids as they are, marked so that a compiled call whose ids fall outside [-size, size)
    raises InputError (for index arithmetic that does not end in a `take`)."""
    return make("check_index", (ew.as_tensor(ids),), size=as_size(size))


def take(x, indices, axis=0) -> Tensor:
    """NumPy's ``take(x, indices, axis)``: the rows of `x` along `axis` that `indices`
    (an integer tensor of any shape) name; its gradient is a scatter-add."""
    x = ew.as_tensor(x)
    ids = ew.as_tensor(indices)
    if x.ndim == 0:
        raise shape_error("take", "cannot take from a 0-d tensor", x)
    if not -x.ndim <= int(axis) < x.ndim:
        raise shape_error("take", f"axis {axis} is out of range for a {x.ndim}-d tensor", x, ids)
    return make("take", (x, ids), axis=int(axis) % x.ndim)


def _scatter_infer(inputs, attrs):
    g, ids = inputs
    ax, n, k = attrs["axis"], attrs["size"], ids.ndim
    if not is_int(ids.dtype):
        raise shape_error("scatter_add", f"indices must be int32 or int64, got {ids.dtype}", g, ids)
    if g.dtype == "bool":
        raise shape_error("scatter_add", "cannot add bool slices; cast them first", g, ids)
    if not (0 <= ax and ax + k <= g.ndim and same_shape(g.shape[ax:ax + k], ids.shape)):
        raise shape_error("scatter_add", f"the slices' axes {ax}..{ax + k - 1} must have the ids' shape "
                          f"[{','.join(map(str, ids.shape))}]", g, ids)
    return TensorType(g.dtype, tuple(g.shape[:ax]) + (n,) + tuple(g.shape[ax + k:]))


def _scatter_ref(ctx, g, ids):
    ax, k = ctx.attrs["axis"], ids.ndim
    out = np.zeros(ctx.out_shape, g.dtype)
    n = out.shape[ax]
    ids = ids.astype(np.int64, copy=False)
    ids = np.where(ids < 0, ids + n, ids)
    keep = (ids >= 0) & (ids < n)
    # the index axes as one, its size spelled out: with another axis of size 0 a -1 could stand for any size
    flat = g.reshape(g.shape[:ax] + (ids.size,) + g.shape[ax + k:])
    moved = np.moveaxis(flat, ax, 0)[keep.reshape(-1)]
    np.add.at(np.moveaxis(out, ax, 0), ids.reshape(-1)[keep.reshape(-1)], moved)
    return out


def _scatter_vjp(n, h, needs):
    g, ids = n.inputs
    return (take(h, ids, n.attrs["axis"]) if needs[0] else None), None


register(Op("scatter_add", "special", _scatter_infer, _scatter_ref, _scatter_vjp,
            doc="the transpose of take: rows of zeros of `size` along `axis`, each slice of g added "
                "to the row its id names (repeated ids add up, ids outside [-size, size) are dropped)"))


def scatter_add(g, ids, axis, n) -> Tensor:
    """The transpose of take: an array with `n` rows along `axis` where row v is the
    sum of the slices of g whose id is v (ids as take reads them: negatives count from
    the end, ids outside [-n, n) are dropped)."""
    g, ids = ew.as_tensor(g), ew.as_tensor(ids)
    return make("scatter_add", (g, ids), axis=int(axis), size=as_size(n))


def arange(n, dtype="int32") -> Tensor:
    """0, 1, ..., n-1 as a 1-d integer tensor; `n` an int or a size such as ``x.shape[0]``."""
    if isinstance(n, Tensor):
        raise TypeError("arange: n must be an int or a size (such as x.shape[0]), not a tensor")
    s = as_size(n)
    if not isinstance(s, (int, Dim)):
        raise TypeError(f"arange: bad size {n!r}")
    return ew.iota((s,), axis=0, dtype=dtype)
