"""Movement ops: reshape, transpose, broadcast_to, slice, pad, concatenate.

Each is an index map (the fusion pass turns them into affine loads); composites
(expand_dims, squeeze, stack, indexing) are built from them.
"""
from __future__ import annotations

import numpy as np

from ..node import Op, Tensor, make, register, shape_error
from ..sizes import join
from ..types import Dim, TensorType, as_size, size_product
from . import elementwise as ew

# ----------------------------------------------------------------------------- reshape


def _reshape_infer(inputs, attrs):
    (x,) = inputs
    if size_product(x.shape) != size_product(attrs["shape"]) and not _joined_axes(x.shape, attrs["shape"]):
        raise shape_error("reshape", f"cannot reshape {x.type} to [{','.join(map(str, attrs['shape']))}]: sizes differ", x)
    return TensorType(x.dtype, attrs["shape"])


def _joined_axes(a, b) -> bool:
    """Same rank, each axis the same or two joinable sizes (a cotangent's shape read as its
    input's, after an op joined their sizes: nngraph/sizes.py)."""
    return len(a) == len(b) and all(join(s, t) is not None for s, t in zip(a, b))


register(Op("reshape", "movement", _reshape_infer, lambda ctx, a: a.reshape(ctx.out_shape),
            lambda n, g, needs: (reshape(g, n.inputs[0].shape),),
            canonicalize=lambda i, a: (i[0] if tuple(i[0].shape) == tuple(a["shape"]) else
                                       (make("reshape", (i[0].inputs[0],), shape=a["shape"]) if i[0].op == "reshape" else None)),
            doc="same elements, new shape (row-major)"))


def reshape(x, *shape) -> Tensor:
    """NumPy reshape; one entry may be -1, symbolic sizes are allowed."""
    (x,) = ew._coerce(x)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = list(shape)
    if shape.count(-1) > 1:
        raise shape_error("reshape", "only one size may be -1", x)
    if -1 in shape:
        k = shape.index(-1)
        rest = [as_size(s) for i, s in enumerate(shape) if i != k]
        c_all, s_all = size_product(x.shape)
        c_rest, s_rest = size_product(rest)
        left = s_all - s_rest
        if (s_rest - s_all) or c_rest == 0 or c_all % c_rest or (len(left) > 1 or sum(left.values()) > 1) or (left and c_all // c_rest != 1):
            raise shape_error("reshape", f"cannot infer -1 when reshaping {x.type} to {tuple(shape)}", x)
        shape[k] = Dim(next(iter(left))) if left else c_all // c_rest
    return make("reshape", (x,), shape=tuple(as_size(s) for s in shape))


# ----------------------------------------------------------------------------- transpose


def _transpose_infer(inputs, attrs):
    (x,) = inputs
    perm = attrs["perm"]
    if sorted(perm) != list(range(x.ndim)):
        raise shape_error("transpose", f"axes {perm} are not a permutation of {x.ndim} axes", x)
    return TensorType(x.dtype, tuple(x.shape[p] for p in perm))


def _transpose_canon(inputs, attrs):
    (x,) = inputs
    perm = attrs["perm"]
    if list(perm) == list(range(len(perm))):
        return x
    if x.op == "transpose":
        inner = x.attrs["perm"]
        return transpose(x.inputs[0], tuple(inner[p] for p in perm))
    return None


register(Op("transpose", "movement", _transpose_infer, lambda ctx, a: np.transpose(a, ctx.attrs["perm"]),
            lambda n, g, needs: (transpose(g, tuple(np.argsort(n.attrs["perm"]).tolist())),),
            canonicalize=_transpose_canon, doc="permute axes"))


def transpose(x, axes=None) -> Tensor:
    (x,) = ew._coerce(x)
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(int(a) % max(x.ndim, 1) for a in axes)
    return make("transpose", (x,), perm=perm)


# ----------------------------------------------------------------------------- broadcast_to


def _bcast_infer(inputs, attrs):
    (x,) = inputs
    shape = attrs["shape"]
    if x.ndim > len(shape):
        raise shape_error("broadcast_to", f"cannot broadcast {x.type} to fewer axes [{','.join(map(str, shape))}]", x)
    for i, s in enumerate(x.shape):
        t = shape[len(shape) - x.ndim + i]
        if s != 1 and join(s, t) is None:
            raise shape_error("broadcast_to", f"cannot broadcast {x.type} to [{','.join(map(str, shape))}]", x)
    return TensorType(x.dtype, shape)


register(Op("broadcast_to", "movement", _bcast_infer, lambda ctx, a: np.broadcast_to(a, ctx.out_shape).copy(),
            lambda n, g, needs: (ew.unbroadcast(g, n.inputs[0].shape),),
            canonicalize=lambda i, a: i[0] if tuple(i[0].shape) == tuple(a["shape"]) else None,
            doc="repeat along size-1 or new leading axes"))


def broadcast_to(x, shape) -> Tensor:
    (x,) = ew._coerce(x)
    return make("broadcast_to", (x,), shape=tuple(as_size(s) for s in shape))


# ----------------------------------------------------------------------------- slice


def _slice_infer(inputs, attrs):
    (x,) = inputs
    sl = attrs["slices"]
    if len(sl) != x.ndim:
        raise shape_error("slice", f"needs one (start, stop, step) per axis, got {len(sl)} for {x.ndim} axes", x)
    out = []
    for (start, stop, step), s in zip(sl, x.shape):
        if isinstance(s, Dim):
            if (start, stop, step) != (0, s, 1):
                raise shape_error("slice", f"only a full slice is supported on symbolic axis {s}", x)
            out.append(s)
            continue
        if step <= 0 or not 0 <= start <= stop <= s:
            raise shape_error("slice", f"bad slice {start}:{stop}:{step} of an axis of size {s}", x)
        out.append(max(0, -(-(stop - start) // step)))
    return TensorType(x.dtype, tuple(out))


def _slice_ref(ctx, a):
    return a[tuple(slice(b, ctx.resolve_size(e), st) for b, e, st in ctx.attrs["slices"])].copy()


def _slice_vjp(n, g, needs):
    x = n.inputs[0]
    pads = []
    for (start, stop, step), s, o in zip(n.attrs["slices"], x.shape, n.shape):
        if isinstance(s, Dim):
            pads.append((0, 0, 0))
            continue
        last = start + (o - 1) * step if o else start
        pads.append((start, s - last - 1 if o else s - start, step - 1))
    return (pad_general(g, tuple(pads), 0.0),)


register(Op("slice", "movement", _slice_infer, _slice_ref, _slice_vjp,
            canonicalize=lambda i, a: i[0] if all((b, e, s) == (0, n, 1) for (b, e, s), n in zip(a["slices"], i[0].shape)) else None,
            doc="a strided window: (start, stop, step) per axis, step > 0"))


def slice_(x, slices) -> Tensor:
    """slices: one (start, stop, step) per axis, NumPy's meaning after normalisation."""
    (x,) = ew._coerce(x)
    return make("slice", (x,), slices=tuple(tuple(s) for s in slices))


# ----------------------------------------------------------------------------- pad


def _pad_infer(inputs, attrs):
    (x,) = inputs
    pads = attrs["pads"]
    if len(pads) != x.ndim:
        raise shape_error("pad", f"needs one (before, after) pair per axis, got {len(pads)} for {x.ndim} axes", x)
    out = []
    for (lo, hi, interior), s in zip(pads, x.shape):
        if min(lo, hi, interior) < 0:
            raise shape_error("pad", f"negative padding {(lo, hi, interior)}", x)
        if isinstance(s, Dim):
            if (lo, hi, interior) != (0, 0, 0):
                raise shape_error("pad", f"cannot pad symbolic axis {s}", x)
            out.append(s)
        else:
            out.append(lo + s + max(s - 1, 0) * interior + hi)
    return TensorType(x.dtype, tuple(out))


def _pad_ref(ctx, a):
    out = np.full(ctx.out_shape, ctx.attrs["value"], dtype=a.dtype)
    idx = tuple(slice(lo, lo + (s - 1) * (it + 1) + 1 if s else lo, it + 1)
                for (lo, hi, it), s in zip(ctx.attrs["pads"], a.shape))
    out[idx] = a
    return out


def _pad_vjp(n, g, needs):
    x = n.inputs[0]
    sl = []
    for (lo, hi, it), s in zip(n.attrs["pads"], x.shape):
        if isinstance(s, Dim):
            sl.append((0, s, 1))
        else:
            sl.append((lo, lo + (s - 1) * (it + 1) + 1 if s else lo, it + 1))
    return (slice_(g, sl),)


register(Op("pad", "movement", _pad_infer, _pad_ref, _pad_vjp,
            canonicalize=lambda i, a: i[0] if all(p == (0, 0, 0) for p in a["pads"]) else None,
            doc="pad with a constant: (before, after, interior) per axis, as XLA's pad"))


def pad_general(x, pads, value=0.0) -> Tensor:
    (x,) = ew._coerce(x)
    return make("pad", (x,), pads=tuple(tuple(int(v) for v in p) for p in pads), value=float(value))


def pad(x, pads, value=0.0) -> Tensor:
    """numpy.pad with a constant: one (before, after) pair per axis."""
    (x,) = ew._coerce(x)
    pads = [tuple(p) for p in pads]
    if len(pads) != x.ndim:
        raise shape_error("pad", f"needs one (before, after) pair per axis, got {len(pads)} for {x.ndim} axes", x)
    return pad_general(x, [(lo, hi, 0) for lo, hi in pads], value)


# ----------------------------------------------------------------------------- concatenate


def _concat_infer(inputs, attrs):
    ax = attrs["axis"]
    first = inputs[0]
    if not 0 <= ax < first.ndim:
        raise shape_error("concatenate", f"axis {ax} out of range for {first.ndim}-d tensors", *inputs)
    total = 0
    for x in inputs:
        if x.ndim != first.ndim or x.dtype != first.dtype or any(
                join(a, b) is None for i, (a, b) in enumerate(zip(x.shape, first.shape)) if i != ax):
            raise shape_error("concatenate", f"operands must agree in dtype and in every axis but {ax}", *inputs)
        if isinstance(x.shape[ax], Dim):
            raise shape_error("concatenate", f"cannot concatenate along symbolic axis {x.shape[ax]}", *inputs)
        total += x.shape[ax]
    return TensorType(first.dtype, tuple(total if i == ax else s for i, s in enumerate(first.shape)))


def _concat_vjp(n, g, needs):
    ax, off, out = n.attrs["axis"], 0, []
    for x, need in zip(n.inputs, needs):
        k = x.shape[ax]
        if need:
            out.append(slice_(g, [(off, off + k, 1) if i == ax else (0, s, 1) for i, s in enumerate(g.shape)]))
        else:
            out.append(None)
        off += k
    return tuple(out)


register(Op("concatenate", "movement", _concat_infer, lambda ctx, *a: np.concatenate(a, axis=ctx.attrs["axis"]),
            _concat_vjp, doc="join along an existing axis"))


def concatenate(xs, axis=0) -> Tensor:
    xs = ew._coerce(*xs)
    if len(xs) == 1:
        return xs[0]
    return make("concatenate", xs, axis=int(axis) % xs[0].ndim)


# ----------------------------------------------------------------------------- composites


def expand_dims(x, axis) -> Tensor:
    (x,) = ew._coerce(x)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    nd = x.ndim + len(axes)
    axes = sorted(a % nd for a in axes)
    shape, it = [], iter(x.shape)
    for i in range(nd):
        shape.append(1 if i in axes else next(it))
    return reshape(x, tuple(shape))


def squeeze(x, axis=None) -> Tensor:
    (x,) = ew._coerce(x)
    if axis is None:
        axes = [i for i, s in enumerate(x.shape) if s == 1]
    else:
        axes = [a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis)]
        for a in axes:
            if x.shape[a] != 1:
                raise shape_error("squeeze", f"axis {a} has size {x.shape[a]}, not 1", x)
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


def stack(xs, axis=0) -> Tensor:
    xs = ew._coerce(*xs)
    nd = xs[0].ndim + 1
    return concatenate([expand_dims(x, axis % nd) for x in xs], axis % nd)


def flatten(x, start_axis=1) -> Tensor:
    """Keep the first `start_axis` axes, merge the rest (Keras' Flatten)."""
    (x,) = ew._coerce(x)
    return reshape(x, tuple(x.shape[:start_axis]) + (-1,))


def getitem(x: Tensor, key) -> Tensor:
    """Basic NumPy indexing: ints, slices (step > 0), None and Ellipsis (integer tensors,
    lists and arrays: ops/advanced_index.py, chosen by Tensor.__getitem__)."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(isinstance(k, Tensor) or isinstance(k, (list, np.ndarray)) for k in key):
        raise TypeError("getitem: basic indexing takes ints, slices, None and Ellipsis; index with a "
                        "tensor (x[ids]) for a gather")
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_real > x.ndim:
        raise shape_error("getitem", f"too many indices ({n_real}) for a {x.ndim}-d tensor", x)
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (x.ndim - n_real) + key[i + 1:]
    else:
        key = key + (slice(None),) * (x.ndim - n_real)
    slices, out_shape, axis = [], [], 0
    for k in key:
        if k is None:
            out_shape.append(1)
            continue
        s = x.shape[axis]
        if isinstance(k, (int, np.integer)):
            if isinstance(s, Dim):
                raise shape_error("getitem", f"cannot index symbolic axis {s} with an int", x)
            kk = int(k) + s if k < 0 else int(k)
            if not 0 <= kk < s:
                raise shape_error("getitem", f"index {k} out of range for axis {axis} of size {s}", x)
            slices.append((kk, kk + 1, 1))
        elif isinstance(k, slice):
            if isinstance(s, Dim):
                if k != slice(None) and k != slice(None, None, 1) and k != slice(0, None, None):
                    raise shape_error("getitem", f"only ':' is supported on symbolic axis {s}", x)
                slices.append((0, s, 1))
                out_shape.append(s)
            else:
                start, stop, step = k.indices(s)
                if step <= 0:
                    raise shape_error("getitem", "negative slice steps are not supported", x)
                stop = max(stop, start)
                slices.append((start, stop, step))
                out_shape.append(max(0, -(-(stop - start) // step)))
        else:
            raise TypeError(f"unsupported index {k!r}")
        axis += 1
    y = slice_(x, slices)
    return reshape(y, tuple(out_shape))
