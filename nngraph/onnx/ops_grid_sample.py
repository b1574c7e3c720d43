"""ONNX GridSample (2-d and, from opset 20, 3-d): interpolation at the points of a grid
computed at run time, as ONNX's reference implementation does it.

Per spatial axis the grid coordinate is mapped to pixel units (align_corners), rounded
half to even for "nearest", and a point outside the border is clamped ("border") or
reflected ("reflection") onto it. Each axis then gives its taps: one (nearest), two
(linear) or four (cubic, Keys' kernel with a = -0.75), each a pixel index and a weight;
an index outside the image reads zero ("zeros": its weight is masked), the edge
("border") or its reflection ("reflection"). Every combination of taps over the axes
is one `take` from the flattened input, weighted and summed. The output differentiates
in the input (take's gradient is a scatter-add) and in the grid (through the weights;
the indices are piecewise constant). All sizes must be static.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..ops import elementwise as ew
from ..ops import gather
from ..ops import movement as mv
from .ops_extra import floor, round_half_even
from .registry import converter

_CUBIC_A = -0.75


def _reflect(v, lo: float, hi: float):
    """v reflected by the near border until it lies in [lo, hi] (the reference's _gs_reflect)."""
    span = hi - lo
    if span <= 0:
        return ew.mul(ew.ones_like(v), lo)
    below, above = ew.less(v, lo), ew.greater(v, hi)
    dx = ew.where(below, ew.sub(lo, v), ew.sub(v, hi))
    turns = floor(ew.div(dx, span))
    rest = ew.sub(dx, ew.mul(turns, span))
    even = ew.equal(ew.sub(turns, ew.mul(floor(ew.mul(turns, 0.5)), 2.0)), 0.0)
    from_below = ew.where(even, ew.add(rest, lo), ew.sub(hi, rest))
    from_above = ew.where(even, ew.sub(hi, rest), ew.add(rest, lo))
    return ew.where(below, from_below, ew.where(above, from_above, v))


def _onto_border(c, size: int, lo: float, hi: float, padding: str):
    """A coordinate outside [lo, hi] clamped (border) or reflected (reflection) onto it."""
    if padding == "zeros":
        return c
    outside = ew.logical_or(ew.less(c, lo), ew.greater(c, hi))
    moved = ew.minimum(ew.maximum(c, 0.0), float(size - 1)) if padding == "border" else _reflect(c, lo, hi)
    return ew.where(outside, moved, c)


def _cubic_weights(t) -> list:
    """Keys' cubic weights of the taps at -1, 0, 1, 2 for a fractional position t in [0, 1)."""
    a = _CUBIC_A

    def far(d):  # 1 < d < 2
        return ew.sub(ew.mul(ew.add(ew.mul(ew.sub(ew.mul(d, a), 5 * a), d), 8 * a), d), 4 * a)

    def near(d):  # 0 <= d <= 1
        return ew.add(ew.mul(ew.mul(ew.sub(ew.mul(d, a + 2), a + 3), d), d), 1.0)

    one_minus = ew.sub(1.0, t)
    return [far(ew.add(t, 1.0)), near(t), near(one_minus), far(ew.add(one_minus, 1.0))]


def _taps(c, size: int, lo: float, hi: float, mode: str, padding: str) -> list:
    """(int64 index, weight or None) per tap of one axis."""
    if mode == "nearest":
        points = [(round_half_even(c), None)]
    else:
        base = floor(c)
        t = ew.sub(c, base)
        if mode == "linear":
            points = [(base, ew.sub(1.0, t)), (ew.add(base, 1.0), t)]
        else:
            points = [(ew.add(base, float(k)), w) for k, w in zip((-1, 0, 1, 2), _cubic_weights(t))]
    out = []
    for idx, w in points:
        if padding == "zeros":
            inside = ew.logical_and(ew.greater_equal(idx, 0.0), ew.less_equal(idx, float(size - 1)))
            mask = ew.cast(inside, c.dtype)
            w = mask if w is None else ew.mul(w, mask)
        elif padding == "reflection":
            idx = _reflect(idx, lo, hi)
        idx = ew.minimum(ew.maximum(idx, 0.0), float(size - 1))  # trunc of a reflected index, or the edge
        out.append((ew.cast(idx, "int64"), w))
    return out


def _check(ctx, x, grid, mode):
    r = x.ndim - 2
    if r not in ((2,) if ctx.opset < 20 else (2, 3)):
        raise ctx.error(f"{r}-d input {x.type} is not supported at opset {ctx.opset}")
    if grid.ndim != r + 2 or grid.shape[-1] != r or grid.shape[0] != x.shape[0]:
        raise ctx.error(f"grid {grid.type} must be [N, out..., {r}] for input {x.type}")
    if not all(isinstance(s, int) for s in tuple(x.shape) + tuple(grid.shape)):
        raise ctx.error(f"needs static shapes, got {x.type} and grid {grid.type}")
    if mode == "cubic" and r != 2:
        raise ctx.error("mode cubic needs a 2-d input")
    return r


@converter("GridSample", 16, attrs=("align_corners", "mode", "padding_mode"))
def _grid_sample(ctx):
    x, grid = ctx.t(0), ctx.t(1)
    names = ("bilinear", "nearest", "bicubic") if ctx.opset < 20 else ("linear", "nearest", "cubic")
    mode = ctx.refuse_unless("mode", names, names[0])
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    padding = ctx.refuse_unless("padding_mode", ("zeros", "border", "reflection"), "zeros")
    align = bool(ctx.refuse_unless("align_corners", (0, 1), 0))
    r = _check(ctx, x, grid, mode)
    n, c, dims = x.shape[0], x.shape[1], tuple(x.shape[2:])
    axis_taps = []
    for i, size in enumerate(dims):
        g = mv.squeeze(mv.slice_(grid, [(0, s, 1) for s in grid.shape[:-1]] + [(r - 1 - i, r - i, 1)]), -1)
        if align:
            coord = ew.mul(ew.add(g, 1.0), (size - 1) / 2.0)
        else:
            coord = ew.mul(ew.sub(ew.mul(ew.add(g, 1.0), size), 1.0), 0.5)
        if mode == "nearest":
            coord = round_half_even(coord)
        lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        axis_taps.append(_taps(_onto_border(coord, size, lo, hi, padding), size, lo, hi, mode, padding))
    strides = [int(np.prod(dims[i + 1:])) for i in range(r)]
    plane = int(np.prod(dims))
    base = (np.arange(n)[:, None] * c + np.arange(c)[None, :]) * plane  # [N, C] offset of each image
    base = base.reshape((n, c) + (1,) * (grid.ndim - 2)).astype(np.int64)
    flat = mv.reshape(x, (n * c * plane,))
    terms = []
    for combo in itertools.product(*axis_taps):
        pos = None
        weight = None
        for (idx, w), stride in zip(combo, strides):
            step = ew.mul(idx, np.asarray(stride, np.int64))
            pos = step if pos is None else ew.add(pos, step)
            weight = w if weight is None else (weight if w is None else ew.mul(weight, w))
        values = gather.take(flat, ew.add(mv.expand_dims(pos, 1), base), 0)
        terms.append(values if weight is None else ew.mul(values, mv.expand_dims(weight, 1)))
    while len(terms) > 1:
        terms = [ew.add(a, b) for a, b in zip(terms[::2], terms[1::2])] + terms[len(terms) // 2 * 2:]
    return terms[0]
