"""ONNX shape and data-movement operators, and the shape arithmetic that exporters
emit (Shape -> Gather -> Unsqueeze -> Concat -> Reshape), kept symbolic on SymShape
values so a dynamic batch size survives it."""
from __future__ import annotations

import numpy as np

from ..ops import elementwise as ew
from ..ops import movement as mv
from ..types import Dim
from .registry import SymShape, converter

INT_MAX = 2**62


def _known(sizes):
    """A SymShape with only int sizes is just an int64 vector known at import."""
    if all(isinstance(s, (int, np.integer)) for s in sizes):
        return np.asarray([int(s) for s in sizes], np.int64)
    return SymShape(tuple(sizes))


def _sym_or_const(ctx, i):
    """Input i as a list of sizes when it is a shape vector (SymShape or 1-d ints), else None."""
    v = ctx.values[i] if ctx.has(i) else None
    if isinstance(v, SymShape):
        return list(v.sizes)
    return None


@converter("Identity", 1)
def _identity(ctx):
    return ctx.values[0]


@converter("Shape", 1, attrs=("start", "end"))
def _shape(ctx):
    v = ctx.values[0]
    shape = tuple(v.shape)
    n = len(shape)
    start, end = int(ctx.attr("start", 0)), ctx.attr("end")
    start = min(max(start + n if start < 0 else start, 0), n)
    end = n if end is None else min(max(int(end) + n if end < 0 else int(end), 0), n)
    return _known(shape[start:end])


@converter("Size", 1)
def _size(ctx):
    shape = ctx.values[0].shape
    if any(isinstance(s, Dim) for s in shape):
        raise ctx.error(f"the size of a tensor with dynamic sizes {tuple(shape)} is not known at import")
    return np.asarray(int(np.prod(shape, dtype=np.int64)), np.int64)


@converter("Constant", 1, attrs=("value", "value_float", "value_floats", "value_int", "value_ints",
                                  "sparse_value", "value_string", "value_strings"))
def _constant(ctx):
    for name in ("sparse_value", "value_string", "value_strings"):
        if name in ctx.attrs:
            raise ctx.error(f"attribute {name} is not supported (nngraph has no sparse or string tensors)")
    if "value" in ctx.attrs:
        from .tensors import to_array
        return to_array(ctx.attrs["value"].t, "attribute value", ctx.error)
    for name, dt in (("value_float", np.float32), ("value_floats", np.float32),
                     ("value_int", np.int64), ("value_ints", np.int64)):
        if name in ctx.attrs:
            return np.asarray(ctx.attr(name), dt)
    raise ctx.error("has no value attribute")


@converter("ConstantOfShape", 9, attrs=("value",))
def _constant_of_shape(ctx):
    from .tensors import to_array
    value = (to_array(ctx.attrs["value"].t, "attribute value", ctx.error).reshape(-1)
             if "value" in ctx.attrs else np.zeros(1, np.float32))
    sizes = ctx.shape_value(0)
    if all(isinstance(s, int) for s in sizes):
        return np.full(sizes, value[0], value.dtype)
    return mv.broadcast_to(ew.constant(value.reshape(())), sizes)


def _reshape_target(ctx, x, sizes, allowzero):
    out = []
    for i, s in enumerate(sizes):
        if isinstance(s, (int, np.integer)) and s == 0 and not allowzero:
            if i >= x.ndim:
                raise ctx.error(f"shape entry {i} is 0 (copy) but the input {x.type} has only {x.ndim} axes")
            s = x.shape[i]
        elif isinstance(s, (int, np.integer)) and s < -1:
            raise ctx.error(f"shape entry {i} is {s}")
        out.append(s if isinstance(s, Dim) else int(s))
    return out


@converter("Reshape", 5, attrs=("allowzero",))
def _reshape(ctx):
    x = ctx.t(0)
    sizes = _reshape_target(ctx, x, ctx.shape_value(1), bool(ctx.attr("allowzero", 0)))
    return mv.reshape(x, tuple(sizes))


@converter("Flatten", 1, attrs=("axis",))
def _flatten(ctx):
    x = ctx.t(0)
    axis = int(ctx.attr("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    if axis == 0:
        return mv.reshape(x, (1, -1))
    lead = x.shape[:axis]
    if all(isinstance(s, int) for s in lead):
        return mv.reshape(x, (int(np.prod(lead, dtype=np.int64)), -1))
    if axis == x.ndim:
        return mv.reshape(x, (-1, 1))
    return mv.reshape(x, (-1,) + (int(np.prod(x.shape[axis:], dtype=np.int64)),)) if all(
        isinstance(s, int) for s in x.shape[axis:]) else _refuse_flatten(ctx, x)


def _refuse_flatten(ctx, x):
    raise ctx.error(f"cannot flatten {x.type} at axis {ctx.attr('axis', 1)}: dynamic sizes on both sides")


@converter("Transpose", 1, attrs=("perm",))
def _transpose(ctx):
    x = ctx.t(0)
    perm = ctx.attr("perm")
    return mv.transpose(x, None if perm is None else tuple(int(p) for p in perm))


@converter("Concat", 4, attrs=("axis",))
def _concat(ctx):
    idx = [i for i in range(len(ctx.values)) if ctx.has(i)]
    if any(isinstance(ctx.values[i], SymShape) for i in idx):
        sizes = []
        for i in idx:
            sizes += list(ctx.shape_value(i))
        return _known(sizes)
    xs = [ctx.t(i) for i in idx]
    xs = [x for x in xs if not (x.ndim == 1 and x.shape[0] == 0)] or xs[:1]
    axis = int(ctx.attr("axis"))
    return mv.concatenate(xs, axis + xs[0].ndim if axis < 0 else axis)


def _axes_of(ctx, attr_until: int, input_index: int):
    """Axes from the attribute (opsets before attr_until) or from an input (after)."""
    if ctx.opset < attr_until:
        a = ctx.attr("axes")
        return None if a is None else [int(v) for v in a]
    if not ctx.has(input_index):
        return None
    return [int(v) for v in ctx.const(input_index, "axes").reshape(-1)]


@converter("Unsqueeze", 1, attrs=("axes",))
def _unsqueeze(ctx):
    axes = _axes_of(ctx, 13, 1)
    if axes is None:
        raise ctx.error("axes are required")
    v = ctx.values[0]
    if isinstance(v, SymShape) and v.scalar:
        if axes not in ([0], [-1]):
            raise ctx.error(f"axes {axes} are out of range for an output of rank 1")
        return SymShape(v.sizes)
    x = ctx.t(0)
    nd = x.ndim + len(axes)
    axes = sorted(a + nd if a < 0 else a for a in axes)
    if len(set(axes)) != len(axes) or any(not 0 <= a < nd for a in axes):
        raise ctx.error(f"axes {axes} are repeated or out of range for an output of rank {nd}")
    return mv.expand_dims(x, tuple(axes))


@converter("Squeeze", 1, attrs=("axes",))
def _squeeze(ctx):
    x = ctx.t(0)
    axes = _axes_of(ctx, 13, 1)
    if axes is None:
        if any(isinstance(s, Dim) for s in x.shape):
            raise ctx.error(f"Squeeze without axes on {x.type}: which dynamic sizes are 1 is not known")
        return mv.squeeze(x)
    axes = [a + x.ndim if a < 0 else a for a in axes]
    for a in axes:
        if x.shape[a] != 1:
            raise ctx.error(f"cannot squeeze axis {a} of {x.type}: its size is not 1")
    return mv.squeeze(x, tuple(axes))
