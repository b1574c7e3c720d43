"""ONNX BitShift on int32 and int64, exact, from multiplications and floors.

nngraph has no bit operations. A left shift by k is the wrapping product with 2^k
(two's complement arithmetic is modulo 2^width), 2^k read from a table of the powers
(2^(width-1) wraps to the most negative value). A right shift is arithmetic (the
sign fills in), floor(a / 2^k): exact in float64 for int32; an int64 is first split
into a high and a low 32-bit half (hi 2^32 + lo, 0 <= lo < 2^32, both exact in
float64, a rounding of the split corrected by one step), so that
floor(a / 2^k) = hi 2^(32-k) + floor(lo / 2^k) for k < 32 and floor(hi / 2^(k-32))
otherwise. Shifts outside [0, width) give 0 (left) or the sign fill (right), as
opset 28's definition and ONNX's reference implementation.
"""
from __future__ import annotations

import numpy as np

from ..ops import elementwise as ew
from ..ops import gather
from .ops_extra import floor
from .registry import converter

_WIDTH = {"int32": 32, "int64": 64}


def _powers(dtype: str) -> np.ndarray:
    width = _WIDTH[dtype]
    return (np.uint64(1) << np.arange(width, dtype=np.uint64)).astype(np.dtype(f"u{width // 8}")).view(dtype)


def _floor_div(a, k, dtype: str):
    """floor(a / 2^k) for 0 <= k < width, exact."""
    if dtype == "int32":
        q = floor(ew.div(ew.cast(a, "float64"), ew.cast(gather.take(_powers("int64"), k, 0), "float64")))
        return ew.cast(q, dtype)
    two32 = np.asarray(2.0 ** 32)
    hi = ew.cast(floor(ew.div(ew.cast(a, "float64"), two32)), "int64")
    lo = ew.sub(a, ew.mul(hi, np.int64(2 ** 32)))
    low, high = ew.less(lo, np.int64(0)), ew.greater_equal(lo, np.int64(2 ** 32))
    hi = ew.where(low, ew.sub(hi, np.int64(1)), ew.where(high, ew.add(hi, np.int64(1)), hi))
    lo = ew.where(low, ew.add(lo, np.int64(2 ** 32)), ew.where(high, ew.sub(lo, np.int64(2 ** 32)), lo))
    table = np.asarray([2.0 ** (j % 32) for j in range(64)])  # the divisor of the half that is shifted
    scale = ew.cast(gather.take(table, k, 0), "float64")
    small = ew.add(ew.mul(hi, gather.take(np.asarray([2 ** (32 - j) if j < 32 else 0 for j in range(64)],
                                                           np.int64), k, 0)),
                   ew.cast(floor(ew.div(ew.cast(lo, "float64"), scale)), "int64"))
    large = ew.cast(floor(ew.div(ew.cast(hi, "float64"), scale)), "int64")
    return ew.where(ew.less(k, np.int64(32)), small, large)


@converter("BitShift", 11, attrs=("direction",))
def _bit_shift(ctx):
    a, b = ctx.t(0), ctx.t(1)
    direction = ctx.refuse_unless("direction", ("LEFT", "RIGHT"), None)
    if a.dtype not in _WIDTH or b.dtype != a.dtype:
        raise ctx.error(f"inputs must be int32 or int64 of one type, got {a.type} and {b.type}")
    width = _WIDTH[a.dtype]
    inside = ew.logical_and(ew.greater_equal(b, np.asarray(0, a.dtype)), ew.less(b, np.asarray(width, a.dtype)))
    k = ew.where(inside, b, ew.zeros_like(b))
    if direction == "LEFT":
        shifted, outside = ew.mul(a, gather.take(_powers(a.dtype), k, 0)), ew.zeros_like(a)
    else:
        shifted = _floor_div(a, k, a.dtype)
        outside = ew.where(ew.less(a, np.asarray(0, a.dtype)), ew.mul(ew.ones_like(a), np.asarray(-1, a.dtype)),
                           ew.zeros_like(a))
    return ew.where(inside, shifted, outside)
