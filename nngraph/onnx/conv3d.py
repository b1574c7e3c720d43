"""3-d Conv and ConvTranspose for the ONNX importer, built from nngraph's 2-d ops.

nngraph has 1-d and 2-d windows only. A 3-d convolution is a sum over the kernel's
depth taps: tap a reads depth a*dilation + o*stride of the (depth-padded) input for
output depth o, which is a strided slice of the input; folding that depth into the
batch makes it one 2-d convolution with the weight's depth slice a. The transposed
convolution is the mirror: each depth tap is a 2-d transposed convolution of every
input depth, spread to output depth a*dilation + i*stride with interior padding,
summed over taps. Both differentiate like the ops they are made of.
"""
from __future__ import annotations

from ..ops import conv as cv
from ..ops import elementwise as ew
from ..ops import movement as mv


def _whole(t) -> list:
    return [(0, s, 1) for s in t.shape]


def _depth_tap(t, axis: int, start: int, stop: int, step: int):
    spec = _whole(t)
    spec[axis] = (start, stop, step)
    return mv.slice_(t, spec)


def _fold_depth(x):
    """[N, C, D, H, W] -> [N*D, C, H, W]."""
    return mv.reshape(mv.transpose(x, (0, 2, 1, 3, 4)), (-1,) + tuple(x.shape[i] for i in (1, 3, 4)))


def _unfold_depth(y, depth: int):
    """[N*D, C, H, W] -> [N, C, D, H, W]."""
    return mv.transpose(mv.reshape(y, (-1, depth) + tuple(y.shape[1:])), (0, 2, 1, 3, 4))


def _weight_tap(w, a: int):
    """The 2-d weight [O, I, kh, kw] of depth tap a of a [O, I, kd, kh, kw] weight."""
    return mv.reshape(_depth_tap(w, 2, a, a + 1, 1), tuple(w.shape[i] for i in (0, 1, 3, 4)))


def _tree_sum(parts: list):
    while len(parts) > 1:  # balanced, so the fused expression stays shallow
        parts = [ew.add(a, b) for a, b in zip(parts[::2], parts[1::2])] + parts[len(parts) // 2 * 2:]
    return parts[0]


def conv3d(ctx, x, w, strides, dilations, pads, group: int):
    """ONNX Conv over [N, C, D, H, W] with weight [M, C/group, kd, kh, kw]; pads: 3 (begin, end)."""
    (sd, sh, sw), (dd, dh, dw), kd = strides, dilations, int(w.shape[2])
    xp = mv.pad(x, [(0, 0), (0, 0), pads[0], (0, 0), (0, 0)]) if pads[0] != (0, 0) else x
    out_d = (int(xp.shape[2]) - (kd - 1) * dd - 1) // sd + 1
    if out_d < 1:
        raise ctx.error(f"the kernel's depth {kd} (dilation {dd}) is larger than the padded input {xp.type}")
    parts = []
    for a in range(kd):
        xa = _fold_depth(_depth_tap(xp, 2, a * dd, a * dd + (out_d - 1) * sd + 1, sd))
        parts.append(cv.conv2d(xa, _weight_tap(w, a), stride=(sh, sw), padding=(pads[1], pads[2]),
                               dilation=(dh, dw), groups=group))
    return _unfold_depth(_tree_sum(parts), out_d)


def conv_transpose3d(ctx, x, w, strides, dilations, group: int, depth_window, crop_and_fill_2d):
    """ONNX ConvTranspose over [N, C, D, H, W] with weight [C, M/group, kd, kh, kw].
    `depth_window` is (begin, size) of the output in the full result's depth;
    `crop_and_fill_2d(x2, w2)` is the 2-d transposed convolution over height and width,
    windowed as the other axes ask."""
    (sd, dd), kd, depth = (strides[0], dilations[0]), int(w.shape[2]), int(x.shape[2])
    full = (depth - 1) * sd + (kd - 1) * dd + 1
    x2 = _fold_depth(x)
    parts = []
    for a in range(kd):
        ya = _unfold_depth(crop_and_fill_2d(x2, _weight_tap(w, a)), depth)
        spread = [(0, 0, 0)] * 2 + [(a * dd, full - a * dd - (depth - 1) * sd - 1, sd - 1)] + [(0, 0, 0)] * 2
        parts.append(mv.pad_general(ya, spread))
    y = _tree_sum(parts)
    begin, size = depth_window
    if begin < 0 or size < 1 or begin + size - full >= max(sd, dd):
        raise ctx.error(f"the output window asks for depths {begin}..{begin + size - 1} of the transposed "
                        f"convolution's result of depth {full}")
    y = _depth_tap(y, 2, begin, min(begin + size, full), 1)
    if begin + size > full:
        y = mv.pad(y, [(0, 0), (0, 0), (0, begin + size - full), (0, 0), (0, 0)])
    return y
