"""ONNX Resize (opset 10+) and Upsample (7-9): interpolation as one product per axis.

Resize is separable: along each resized axis, output position o is a weighted sum of
a few input positions, with weights that depend only on o, the sizes and the
attributes, never on the data. So the weights are worked out at import, with the
rules of ONNX's reference implementation (coordinate transformation, the taps of
nearest/linear/cubic with or without antialias, exclude_outside, edge clamping), and
the graph gets one op per axis: a take of the chosen rows (nearest; any dtype) or a
product with the [out, in] weight matrix (linear, cubic). tf_crop_and_resize writes
extrapolation_value where the source position falls outside the input, axis by axis
in axis order, as the reference does.
"""
from __future__ import annotations

import numpy as np

from ..ops import elementwise as ew
from ..ops import gather
from ..ops import movement as mv
from ..types import Dim, is_float
from .registry import converter

_COORDINATES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_crop_and_resize")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _source_positions(how, n_in, n_out, scale, roi):
    """x_ori per output position, and the mask of positions outside the input (tf_crop_and_resize)."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in
    if how == "align_corners":
        return (np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)), None
    if how == "asymmetric":
        return y / scale, None
    if how == "tf_crop_and_resize":
        lo, hi = roi
        x = np.full(n_out, (hi - lo) * (n_in - 1) / 2) if width == 1 else y * (hi - lo) * (n_in - 1) / (width - 1)
        x = x + lo * (n_in - 1)
        return x, (x < 0) | (x > n_in - 1)
    if how == "pytorch_half_pixel":
        return (np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5), None
    if how == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (y + 0.5) / scale - 0.5, None
    return (y + 0.5) / scale - 0.5, None  # half_pixel


def _cubic(x, a):
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _taps(mode, ratio, scale, opts):
    """[n_out, taps] weights for ratio in (0, 1] (the source position's distance past its floor)."""
    r = ratio[:, None]
    if mode == "nearest":
        rule = opts["nearest_mode"]
        second = {"round_prefer_floor": r > 0.5, "round_prefer_ceil": r >= 0.5, "floor": r == 1,
                  "ceil": np.ones_like(r, bool)}[rule] | (r == 1)
        return np.concatenate([~second, second], 1).astype(np.float64)
    s = min(scale, 1.0) if opts["antialias"] else 1.0
    if mode == "linear":
        start = int(np.floor(-1 / s) + 1)
        offsets = np.arange(start, 2 - start)
        w = np.clip(1 - np.abs((offsets[None, :] - r) * s), 0, 1)
    else:
        start = int(np.floor(-2 / s) + 1)
        offsets = np.arange(start, 2 - start)
        w = _cubic((offsets[None, :] - r) * s, opts["cubic_coeff_a"])
    return w / w.sum(1, keepdims=True) if opts["antialias"] else w


def _axis_weights(mode, n_in, n_out, scale, roi, opts):
    """(rows [n_out, taps] clamped into the input, weights [n_out, taps], outside mask or None)."""
    x, outside = _source_positions(opts["coordinate_transformation_mode"], n_in, n_out, scale, roi)
    floor = np.floor(x)
    ratio = np.where(x == floor, 1.0, x - floor)
    w = _taps(mode, ratio, scale, opts)
    n = w.shape[1]
    pad = -(-n // 2)
    xp = x + pad
    p = np.floor(xp).astype(np.int64)
    frac = xp - p
    if n % 2 == 0:  # the n nearest positions, ties to the smaller ones (the reference's rule)
        start = p + np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        start = p + np.where(frac <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    rows = start[:, None] + np.arange(n)[None, :] - pad
    if opts["exclude_outside"]:
        w = np.where((rows < 0) | (rows >= n_in), 0.0, w)
        total = w.sum(1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(rows, 0, n_in - 1), w, outside


def _resize_axis(ctx, x, axis, mode, n_out, scale, roi, opts):
    rows, w, outside = _axis_weights(mode, int(x.shape[axis]), n_out, scale, roi, opts)
    if mode == "nearest":
        y = gather.take(x, ew.constant(rows[np.arange(n_out), np.argmax(w, 1)]), axis)
    else:
        if not is_float(x.dtype):
            raise ctx.error(f"mode={mode!r} needs float data, got {x.type}")
        matrix = np.zeros((int(x.shape[axis]), n_out))
        np.add.at(matrix, (rows, np.arange(n_out)[:, None]), w)
        last = x.ndim - 1
        perm = tuple(a for a in range(x.ndim) if a != axis) + (axis,)
        moved = mv.transpose(x, perm) if axis != last else x
        y = moved @ ew.constant(matrix.astype(np.dtype(x.dtype)))
        y = mv.transpose(y, tuple(int(i) for i in np.argsort(perm))) if axis != last else y
    if outside is not None and outside.any():
        view = [1] * x.ndim
        view[axis] = n_out
        y = ew.where(ew.constant(outside.reshape(view)), ew.cast(opts["extrapolation_value"], y.dtype), y)
    return y


def _targets(ctx, x, axes, scales, sizes):
    """Per axis of x: (output size, scale)."""
    shape = list(x.shape)
    out = {a: (shape[a], 1.0) for a in range(x.ndim)}
    if sizes is not None:
        ratios = {a: 1.0 if isinstance(s, Dim) else s / _static(ctx, x, a) for a, s in zip(axes, sizes)}
        policy = ctx.refuse_unless("keep_aspect_ratio_policy", ("stretch", "not_larger", "not_smaller"), "stretch")
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            scale = pick(ratios.values())
            return {**out, **{a: (int(scale * _static(ctx, x, a) + 0.5), scale) for a in axes}}
        return {**out, **{a: (s, ratios[a]) for a, s in zip(axes, sizes)}}
    if len(scales) != len(axes):
        raise ctx.error(f"scales {list(scales)} need one entry per resized axis ({len(axes)})")
    for a, s in zip(axes, scales):
        if s <= 0:
            raise ctx.error(f"scale {s} of axis {a} must be positive")
        if s != 1.0:
            out[a] = (int(s * _static(ctx, x, a)), float(s))
    return out


def _static(ctx, x, axis) -> int:
    if isinstance(x.shape[axis], Dim):
        raise ctx.error(f"resizing dynamic axis {axis} of {x.type} is not supported")
    return int(x.shape[axis])


def _resize(ctx, x, scales, sizes, roi, opts, mode):
    axes = [int(a) % x.ndim for a in (ctx.attr("axes") or range(x.ndim))]
    targets = _targets(ctx, x, axes, scales, sizes)
    full_roi = [(0.0, 1.0)] * x.ndim
    if roi is not None and roi.size:
        k = len(roi) // 2
        for i, a in enumerate(axes if k == len(axes) else range(x.ndim)):
            full_roi[a] = (float(roi[i]), float(roi[i + k]))
    for a in axes:
        n_out, scale = targets[a]
        if n_out == x.shape[a] and scale == 1.0 and full_roi[a] == (0.0, 1.0):
            continue
        _static(ctx, x, a)
        x = _resize_axis(ctx, x, a, mode, n_out, scale, full_roi[a], opts)
    return x


@converter("Resize", 11, attrs=("antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a",
                                 "exclude_outside", "extrapolation_value", "keep_aspect_ratio_policy", "mode",
                                 "nearest_mode"))
def _resize_11(ctx):
    mode = ctx.refuse_unless("mode", ("nearest", "linear", "cubic"), "nearest")
    opts = {"coordinate_transformation_mode": ctx.refuse_unless("coordinate_transformation_mode", _COORDINATES,
                                                                "half_pixel"),
            "nearest_mode": ctx.refuse_unless("nearest_mode", _NEAREST, "round_prefer_floor"),
            "antialias": bool(ctx.attr("antialias", 0)), "exclude_outside": bool(ctx.attr("exclude_outside", 0)),
            "cubic_coeff_a": float(ctx.attr("cubic_coeff_a", -0.75)),
            "extrapolation_value": float(ctx.attr("extrapolation_value", 0.0))}
    if opts["antialias"] and mode == "nearest":
        raise ctx.error("attribute antialias=1 is not supported with mode='nearest' (the spec defines none)")
    roi = ctx.const(1, "roi").astype(np.float64).reshape(-1) if ctx.has(1) else None
    scales = ctx.const(2, "scales").astype(np.float64).reshape(-1) if ctx.has(2) else None
    sizes = _sizes(ctx, ctx.t(0)) if ctx.has(3) else None
    if scales is not None and scales.size and sizes is not None:
        raise ctx.error("scales and sizes are both given; the spec allows one")
    if sizes is None and (scales is None or not scales.size):
        raise ctx.error("one of scales and sizes is required")
    return _resize(ctx, ctx.t(0), None if sizes is not None else scales, sizes, roi, opts, mode)


def _sizes(ctx, x) -> list:
    """The sizes input, where a dynamic size may only keep its axis as it is (PyTorch's
    exporter builds sizes from Shape(x) for the batch and channel axes)."""
    sizes = list(ctx.shape_value(3, "sizes"))
    axes = [int(a) % x.ndim for a in (ctx.attr("axes") or range(x.ndim))]
    if len(sizes) != len(axes):
        raise ctx.error(f"sizes {sizes} need one entry per resized axis ({len(axes)})")
    for a, v in zip(axes, sizes):
        if isinstance(v, Dim) and v != x.shape[a]:
            raise ctx.error(f"sizes {sizes} resize axis {a} of {x.type} to a dynamic size")
    return [x.shape[a] if isinstance(v, Dim) else int(v) for a, v in zip(axes, sizes)]


def _legacy(ctx, scales):
    """Resize-10 and Upsample: scales only, asymmetric coordinates, nearest rounds down."""
    mode = ctx.refuse_unless("mode", ("nearest", "linear"), "nearest")
    opts = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor", "antialias": False,
            "exclude_outside": False, "cubic_coeff_a": -0.75, "extrapolation_value": 0.0}
    return _resize(ctx, ctx.t(0), np.asarray(scales, np.float64).reshape(-1), None, None, opts, mode)


@converter("Resize", 10, 10, attrs=("mode",))
def _resize_10(ctx):
    return _legacy(ctx, ctx.const(1, "scales"))


@converter("Upsample", 7, 9, attrs=("mode", "scales"))
def _upsample(ctx):
    return _legacy(ctx, ctx.attr("scales") if ctx.opset < 9 else ctx.const(1, "scales"))
