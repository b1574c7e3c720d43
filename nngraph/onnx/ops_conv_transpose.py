"""ONNX ConvTranspose on ng.conv_transpose2d (1-d runs as 2-d with a height of one, 3-d as a
sum of 2-d ones over the depth taps: nngraph/onnx/conv3d.py).

ONNX places output position o of an axis at position o + pads_begin of the full
transposed convolution, whose size is (in - 1) * stride + (kernel - 1) * dilation + 1;
output_padding (or an output_shape larger than the full result) adds positions past
its end that only the bias reaches. So the converter works out that window per axis
from pads, output_padding, output_shape and auto_pad (the spec's equations), computes
the part of the full result inside it with ng.conv_transpose2d, and zero-pads the
rest. A window that starts before the result or reaches past its end by the stride
or more is refused, as onnxruntime does; so is an output_shape larger than the result
with auto_pad SAME_*, where onnxruntime and ONNX's reference implementation differ.
"""
from __future__ import annotations

from ..ops import conv as cv
from ..ops import movement as mv
from .conv3d import conv_transpose3d
from .registry import converter
from .spatial import add_channel_bias, from_2d, ints, spatial_rank, to_2d, weight_kernel


def _output_window(ctx, in_sizes, kernel, strides, dilations) -> list:
    """(begin, size) per spatial axis: where the output starts in the full result, and its size."""
    r = len(in_sizes)
    extra = ints(ctx, "output_padding", r, 0)
    for e, s, d in zip(extra, strides, dilations):
        if not 0 <= e < max(s, d):
            raise ctx.error(f"attribute output_padding={list(extra)} must be >= 0 and smaller than the stride "
                            f"{list(strides)} or the dilation {list(dilations)}")
    full = [(n - 1) * s + (k - 1) * d + 1 for n, s, k, d in zip(in_sizes, strides, kernel, dilations)]
    auto = ctx.refuse_unless("auto_pad", ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"), "NOTSET")
    out_shape = ctx.attr("output_shape")
    if out_shape is not None:
        out_shape = [int(v) for v in out_shape][-r:] if len(out_shape) in (r, r + 2) else None
        if out_shape is None:
            raise ctx.error(f"attribute output_shape={list(ctx.attr('output_shape'))} needs {r} entries "
                            "(one per spatial axis)")
    if ctx.attr("pads") is not None:
        if auto != "NOTSET" or out_shape is not None:
            other = f"auto_pad={auto!r}" if auto != "NOTSET" else "output_shape"
            raise ctx.error(f"attribute pads together with {other} is not supported (the spec ignores pads "
                            "then, ONNX's reference implementation uses them)")
        p = ints(ctx, "pads", 2 * r, 0)
        return [(p[i], f + e - p[i] - p[i + r]) for i, (f, e) in enumerate(zip(full, extra))]
    if out_shape is None and auto.startswith("SAME"):
        out_shape = [n * s for n, s in zip(in_sizes, strides)]
    if out_shape is None:
        return [(0, f + e) for f, e in zip(full, extra)]
    window = []  # the spec's total padding, split with the extra one at the end for SAME_UPPER only
    for f, e, o in zip(full, extra, out_shape):
        total = f + e - o
        if total < 0 and auto.startswith("SAME"):
            raise ctx.error(f"attribute output_shape={out_shape} is larger than the result {full} plus "
                            f"output_padding {list(extra)} with auto_pad={auto!r} (onnxruntime and ONNX's "
                            "reference implementation place it differently)")
        window.append((0 if total < 0 else total // 2 if auto == "SAME_UPPER" else total - total // 2, o))
    return window


def _crop_and_fill(ctx, x2, w2, strides, dilations, group, window, full):
    """ng.conv_transpose2d over the part of the full result inside the window, zero-padded to it."""
    for (b, n), f, s, d in zip(window, full, strides, dilations):
        if b < 0 or n < 1 or b + n - f >= max(s, d):
            raise ctx.error(f"the output window (pads, output_padding or output_shape) asks for positions "
                            f"{b}..{b + n - 1} of the transposed convolution's result of size {f}; it may reach "
                            f"past the end by less than the stride or dilation ({max(s, d)})")
    inside = [(b, max(f - b - n, 0)) for (b, n), f in zip(window, full)]
    y = cv.conv_transpose2d(x2, w2, stride=strides, padding=tuple(inside), dilation=dilations, groups=group)
    fill = [(0, max(b + n - f, 0)) for (b, n), f in zip(window, full)]
    if any(hi for _, hi in fill):
        y = mv.pad(y, [(0, 0), (0, 0)] + fill, 0.0)
    return y


@converter("ConvTranspose", 1, attrs=("auto_pad", "dilations", "group", "kernel_shape", "output_padding",
                                       "output_shape", "pads", "strides"))
def _conv_transpose(ctx):
    """X: [N, C, ...], W: [C, M/group, k...] (as ng.conv_transpose2d), optional bias B: [M]."""
    x, w = ctx.t(0), ctx.t(1)
    r = spatial_rank(ctx, x, (1, 2, 3))
    kernel = weight_kernel(ctx, w)
    strides, dilations = ints(ctx, "strides", r, 1), ints(ctx, "dilations", r, 1)
    in_sizes = [int(s) for s in x.shape[2:]]
    window = _output_window(ctx, in_sizes, kernel, strides, dilations)
    full = [(n - 1) * s + (k - 1) * d + 1 for n, s, k, d in zip(in_sizes, strides, kernel, dilations)]
    group = int(ctx.attr("group", 1))
    if r == 3:
        def crop_and_fill_2d(x2, w2):
            return _crop_and_fill(ctx, x2, w2, strides[1:], dilations[1:], group, window[1:], full[1:])
        y = conv_transpose3d(ctx, x, w, strides, dilations, window[0], crop_and_fill_2d)
        return add_channel_bias(ctx, y)
    if r == 1:
        strides, dilations, window, full = (1,) + strides, (1,) + dilations, [(0, 1)] + window, [1] + full
    y = _crop_and_fill(ctx, to_2d(x, r), to_2d(w, r), strides, dilations, group, window, full)
    return from_2d(add_channel_bias(ctx, y), r)
