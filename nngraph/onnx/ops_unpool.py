"""ONNX MaxUnpool: MaxPool's values put back at the positions its indices name."""
from __future__ import annotations

import numpy as np

from ..ops import elementwise as ew
from ..ops import gather
from ..ops import movement as mv
from .registry import converter
from .spatial import ints


@converter("MaxUnpool", 9, attrs=("kernel_shape", "pads", "strides"))
def _max_unpool(ctx):
    """Each value of X goes to the flat position its index names in the unpooled tensor
    (indices as MaxPool's Indices output: over the whole [N, C, ...] tensor): a
    scatter-add of the values divided by a scatter-add of ones, so an index named twice
    holds its value once (MaxPool names an element twice only with the same value;
    other duplicates get their mean where ONNX's reference keeps the last). The end
    is zero-padded to output_shape when given (known at import)."""
    x, idx = ctx.t(0), ctx.t(1)
    kernel = ctx.attr("kernel_shape")
    if kernel is None:
        raise ctx.error("attribute kernel_shape is required")
    r = len(kernel)
    strides, pads = ints(ctx, "strides", r, 1), ints(ctx, "pads", 2 * r, 0)
    if x.ndim != r + 2 or not all(isinstance(s, int) for s in x.shape) or tuple(idx.shape) != tuple(x.shape):
        raise ctx.error(f"X {x.type} and I {idx.type} must have one static shape of rank {r + 2}")
    inferred = tuple(x.shape[:2]) + tuple((n - 1) * s - pads[i] - pads[i + r] + k for i, (n, s, k) in
                                         enumerate(zip(x.shape[2:], strides, kernel)))
    total = int(np.prod(inferred))
    flat_idx = mv.reshape(ew.cast(idx, "int64"), (-1,))
    sums = gather.scatter_add(mv.reshape(x, (-1,)), flat_idx, 0, total)
    counts = gather.scatter_add(ew.ones_like(mv.reshape(x, (-1,))), flat_idx, 0, total)
    y = mv.reshape(ew.where(ew.greater(counts, 0.0), ew.div(sums, ew.maximum(counts, 1.0)), ew.zeros_like(sums)),
                   inferred)
    if not ctx.has(2):
        return y
    shape = [int(v) for v in ctx.const(2, "output_shape").reshape(-1)]
    if len(shape) != len(inferred) or any(o < i for o, i in zip(shape, inferred)):
        raise ctx.error(f"output_shape {shape} is smaller than the unpooled shape {list(inferred)}")
    return mv.pad(y, [(0, o - i) for o, i in zip(shape, inferred)])
