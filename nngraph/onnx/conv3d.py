"""3-d Conv and ConvTranspose for the ONNX importer, built from nngraph's 2-d ops.

nngraph has 1-d and 2-d windows only. Output depth o of a 3-d convolution is a sum
over the kernel's depth taps a of 2-d convolutions of input depth o*stride +
a*dilation (of the depth-padded input) by the weight's depth slice a; the output
depths are stacked. The transposed convolution is the mirror: input depth i through
tap a lands on output depth i*stride + a*dilation, a 2-d transposed convolution
each. Depth is not folded into the batch because a dynamic batch size times the
depth is not a size nngraph can name. Both differentiate like the ops they are made of.
"""
from __future__ import annotations

from ..ops import conv as cv
from ..ops import elementwise as ew
from ..ops import movement as mv


def _whole(t) -> list:
    return [(0, s, 1) for s in t.shape]


def _depth(t, d: int):
    """[N, C, D, H, W] -> [N, C, H, W] at depth d (also the weight's depth slice d)."""
    spec = _whole(t)
    spec[2] = (d, d + 1, 1)
    return mv.squeeze(mv.slice_(t, spec), 2)


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
    taps = [_depth(w, a) for a in range(kd)]
    planes = []
    for o in range(out_d):
        planes.append(_tree_sum([cv.conv2d(_depth(xp, o * sd + a * dd), taps[a], stride=(sh, sw),
                                           padding=(pads[1], pads[2]), dilation=(dh, dw), groups=group)
                                 for a in range(kd)]))
    return mv.stack(planes, 2)


def conv_transpose3d(ctx, x, w, strides, dilations, depth_window, crop_and_fill_2d):
    """ONNX ConvTranspose over [N, C, D, H, W] with weight [C, M/group, kd, kh, kw].
    `depth_window` is (begin, size) of the output in the full result's depth;
    `crop_and_fill_2d(x2, w2)` is the 2-d transposed convolution over height and width,
    windowed as the other axes ask."""
    (sd, dd), kd, depth = (strides[0], dilations[0]), int(w.shape[2]), int(x.shape[2])
    full = (depth - 1) * sd + (kd - 1) * dd + 1
    begin, size = depth_window
    if begin < 0 or size < 1 or begin + size - full >= max(sd, dd):
        raise ctx.error(f"the output window asks for depths {begin}..{begin + size - 1} of the transposed "
                        f"convolution's result of depth {full}")
    lands: dict = {}
    for i in range(depth):
        for a in range(kd):
            lands.setdefault(i * sd + a * dd, []).append((i, a))
    taps = [_depth(w, a) for a in range(kd)]
    planes = {o: _tree_sum([crop_and_fill_2d(_depth(x, i), taps[a]) for i, a in pairs]) for o, pairs in lands.items()}
    like = next(iter(planes.values()))
    return mv.stack([planes[o] if o in planes else ew.zeros_like(like) for o in range(begin, begin + size)], 2)
