"""Gather (`take`) and its transpose (`scatter_add`); `arange`.

``take(x, ids, axis)`` is a primitive of kind "index": out[p, i..., q] = x[p, ids[i...], q],
NumPy's ``take``. Negative ids count from the end (NumPy's rule), so the valid range
of an id is [-n, n) for n = x.shape[axis]. An id outside that range never reads
outside the array: the reference and every backend clamp it to the nearest valid
row, and `ng.compile` adds a check that makes such a call raise ``InputError``
before any parameter changes (nngraph/index_guards.py).

``scatter_add(g, ids, axis, n)`` is take's vjp in x: out[p, v, q] = sum of
g[p, i..., q] over the ids equal to v (repeated ids accumulate, out-of-range ids
are dropped). It is composed from existing primitives: along axis 0 with ids that
flatten to one axis (an embedding table's gradient) it is one GEMM of the one-hot
matrix of the ids [n, ids] by the slices [ids, rest]; otherwise a sum over the ids
of ``where(ids == v, g, 0)``, one fused reduction kernel. Either way its cost grows
with n times the number of ids (a sequential scatter kernel would not).
"""
from __future__ import annotations

import numpy as np

from ..node import Op, Tensor, make, register, shape_error
from ..sizes import same_shape
from ..types import Dim, TensorType, as_size, is_int, size_product
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
    x, ids = n.inputs
    return (scatter_add(g, ids, n.attrs["axis"], x.shape[n.attrs["axis"]]) if needs[0] else None), None


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


def scatter_add(g, ids, axis, n) -> Tensor:
    """The transpose of take: an array with `n` rows along `axis` where row v is the
    sum of the slices of g whose id is v (ids as take reads them: negatives count from
    the end, ids outside [-n, n) are dropped)."""
    g, ids = ew.as_tensor(g), ew.as_tensor(ids)
    n, k = as_size(n), ids.ndim
    if not same_shape(g.shape[axis:axis + k], ids.shape):
        raise shape_error("scatter_add", f"the slices' axes {axis}..{axis + k - 1} must have the ids' shape "
                          f"[{','.join(map(str, ids.shape))}]", g, ids)
    size = ew.numel((n,), ids.dtype)
    wrapped = ew.where(ew.less(ids, ew.as_tensor(0, ids)), ew.add(ids, size), ids)
    flat_ids, flat_rest = _one_axis(ids.shape), _one_axis(g.shape[axis + k:])
    if axis == 0 and flat_ids is not None and flat_rest is not None:
        return _scatter_by_matmul(g, wrapped, n, flat_ids, flat_rest)
    return _scatter_by_reduction(g, wrapped, axis, n)


def _one_axis(shape):
    """The size of `shape` flattened, when it is one size (all static, or one symbol
    among 1s); None otherwise."""
    coef, syms = size_product(shape)
    if not syms:
        return coef
    if coef == 1 and sum(syms.values()) == 1:
        return Dim(next(iter(syms)))
    return None


def _scatter_by_matmul(g, wrapped, n, m, q) -> Tensor:
    """axis 0: out[v, :] = one_hot(ids)[:, v] . g  as one GEMM, [n, m] x [m, q]."""
    from .contraction import matmul
    from .movement import reshape
    rows = ew.iota((n, 1), axis=0, dtype=wrapped.dtype)
    hot = ew.cast(ew.equal(rows, reshape(wrapped, (1, m))), g.dtype)
    return reshape(matmul(hot, reshape(g, (m, q))), (n,) + tuple(g.shape[wrapped.ndim:]))


def _scatter_by_reduction(g, wrapped, axis, n) -> Tensor:
    """Any axis and ids shape: a sum over the ids of where(ids == v, g, 0), one fused
    reduction kernel; its cost is n times the size of g."""
    from .movement import reshape
    from .reduce import sum as rsum
    k = wrapped.ndim
    pre, post = tuple(g.shape[:axis]), tuple(g.shape[axis + k:])
    ones_pre, ones_post = (1,) * len(pre), (1,) * len(post)
    ids_e = reshape(wrapped, ones_pre + (1,) + tuple(wrapped.shape) + ones_post)
    rows = ew.iota(ones_pre + (n,) + (1,) * k + ones_post, axis=len(pre), dtype=wrapped.dtype)
    g_e = reshape(g, pre + (1,) + tuple(g.shape[axis:]))
    picked = ew.where(ew.equal(ids_e, rows), g_e, ew.as_tensor(0.0, g))
    return rsum(picked, tuple(range(len(pre) + 1, len(pre) + 1 + k))) if k else picked


def arange(n, dtype="int32") -> Tensor:
    """0, 1, ..., n-1 as a 1-d integer tensor; `n` an int or a size such as ``x.shape[0]``."""
    if isinstance(n, Tensor):
        raise TypeError("arange: n must be an int or a size (such as x.shape[0]), not a tensor")
    s = as_size(n)
    if not isinstance(s, (int, Dim)):
        raise TypeError(f"arange: bad size {n!r}")
    return ew.iota((s,), axis=0, dtype=dtype)
