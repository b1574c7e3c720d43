"""ONNX DepthToSpace, SpaceToDepth (PyTorch's PixelShuffle / PixelUnshuffle export as
them), OneHot and Col2Im: reshapes and transposes, a comparison with an iota, pads."""
from __future__ import annotations

import numpy as np

from ..ops import elementwise as ew
from ..ops import movement as mv
from ..types import Dim
from .registry import converter
from .spatial import ints


def _blocks(ctx, x, divide: bool):
    b = int(ctx.attr("blocksize"))
    if x.ndim != 4 or any(isinstance(s, Dim) for s in x.shape[1:]):
        raise ctx.error(f"needs a 4-d input with static channels and spatial sizes, got {x.type}")
    mode = ctx.refuse_unless("mode", ("DCR", "CRD"), "DCR")
    n, c, h, w = x.shape
    if divide and (h % b or w % b):
        raise ctx.error(f"blocksize {b} does not divide the spatial sizes of {x.type}")
    if not divide and c % (b * b):
        raise ctx.error(f"blocksize {b}: {b * b} does not divide the channels of {x.type}")
    return b, mode, n, c, h, w


@converter("DepthToSpace", 1, attrs=("blocksize", "mode"))
def _depth_to_space(ctx):
    """DCR: channels are (row offset, column offset, channel); CRD: (channel, row, column)."""
    x = ctx.t(0)
    b, mode, n, c, h, w = _blocks(ctx, x, divide=False)
    if mode == "DCR":
        y = mv.transpose(mv.reshape(x, (n, b, b, c // (b * b), h, w)), (0, 3, 4, 1, 5, 2))
    else:
        y = mv.transpose(mv.reshape(x, (n, c // (b * b), b, b, h, w)), (0, 1, 4, 2, 5, 3))
    return mv.reshape(y, (n, c // (b * b), h * b, w * b))


@converter("SpaceToDepth", 1, attrs=("blocksize", "mode"))
def _space_to_depth(ctx):
    x = ctx.t(0)
    b, mode, n, c, h, w = _blocks(ctx, x, divide=True)
    perm = (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4)
    y = mv.transpose(mv.reshape(x, (n, c, h // b, b, w // b, b)), perm)
    return mv.reshape(y, (n, c * b * b, h // b, w // b))


@converter("OneHot", 9, attrs=("axis",))
def _one_hot(ctx):
    """A new axis of `depth` entries: on_value where it equals the index (negative
    indices count from the end), off_value elsewhere, out-of-range indices all off."""
    ids = ctx.t(0)
    depth = int(np.asarray(ctx.const(1, "depth")).reshape(-1)[0])
    values = ctx.t(2)
    axis = int(ctx.attr("axis", -1))
    axis = axis + ids.ndim + 1 if axis < 0 else axis
    if not 0 <= axis <= ids.ndim:
        raise ctx.error(f"axis {ctx.attr('axis')} is out of range for indices {ids.type}")
    if ids.dtype not in ("int32", "int64"):
        ids = ew.cast(ids, "int64")  # (float indices: ONNX casts them)
    ids = ew.where(ew.less(ids, 0), ew.add(ids, depth), ids)
    shape = tuple(ids.shape[:axis]) + (depth,) + tuple(ids.shape[axis:])
    positions = ew.iota(shape, axis=axis, dtype=ids.dtype)
    hit = ew.equal(positions, mv.expand_dims(ids, axis))
    off = mv.reshape(mv.slice_(values, [(0, 1, 1)]), ())
    on = mv.reshape(mv.slice_(values, [(1, 2, 1)]), ())
    return ew.where(hit, on, off)


@converter("Col2Im", 18, attrs=("dilations", "pads", "strides"))
def _col2im(ctx):
    """The transpose of im2col: column block b of every channel is spread over the
    padded image at offset b * dilation with stride - 1 zeros between its entries
    (one pad with interior padding per block position), summed, then the pads are cut."""
    x = ctx.t(0)
    image = [int(v) for v in ctx.const(1, "image_shape").reshape(-1)]
    block = [int(v) for v in ctx.const(2, "block_shape").reshape(-1)]
    r = len(image)
    dil, stride = ints(ctx, "dilations", r, 1), ints(ctx, "strides", r, 1)
    pads = ints(ctx, "pads", 2 * r, 0)
    padded = [image[i] + pads[i] + pads[i + r] for i in range(r)]
    outs = [(p - (d * (k - 1) + 1)) // s + 1 for p, d, k, s in zip(padded, dil, block, stride)]
    per_block = int(np.prod(block))
    if x.ndim != 3 or not isinstance(x.shape[1], int) or x.shape[1] % per_block or x.shape[2] != int(np.prod(outs)):
        raise ctx.error(f"input {x.type} must be [N, C * {per_block}, {int(np.prod(outs))}] for image_shape "
                        f"{image}, block_shape {block}")
    channels = x.shape[1] // per_block
    total = None
    for b_flat, b in enumerate(np.ndindex(*block)):
        cols = mv.slice_(x, [(0, x.shape[0], 1), (b_flat, x.shape[1], per_block), (0, x.shape[2], 1)])
        grid = mv.reshape(cols, (x.shape[0], channels) + tuple(outs))
        spread = [(0, 0, 0), (0, 0, 0)] + [
            (o * d, p - o * d - ((n - 1) * s + 1), s - 1) for o, d, p, n, s in zip(b, dil, padded, outs, stride)]
        placed = mv.pad_general(grid, spread)
        total = placed if total is None else ew.add(total, placed)
    return mv.slice_(total, [(0, total.shape[0], 1), (0, channels, 1)] +
                     [(pads[i], pads[i] + image[i], 1) for i in range(r)])

