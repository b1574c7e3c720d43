"""Nearest-neighbour upsampling, composed from reshape and broadcast_to (so it fuses
into its consumer, and its gradient is a sum over each block)."""
from __future__ import annotations

from ..node import Tensor, shape_error
from . import elementwise as ew
from .conv import pair
from .movement import broadcast_to, reshape


def upsample2d(x, scale, mode="nearest") -> Tensor:
    """x: [N, C, H, W] -> [N, C, H*sh, W*sw], each pixel repeated into an sh x sw block.
    `scale` is an int or a pair of ints; only mode="nearest" exists."""
    (x,) = ew._coerce(x)
    if mode != "nearest":
        raise ValueError(f"upsample2d: mode must be 'nearest', got {mode!r}")
    if x.ndim != 4:
        raise shape_error("upsample2d", f"needs a 4-d NCHW input, got {x.type}", x)
    sh, sw = pair("upsample2d", "scale", scale, x)
    if sh < 1 or sw < 1:
        raise shape_error("upsample2d", f"scale must be >= 1, got {(sh, sw)}", x)
    n, c, h, w = x.shape
    for s in (h, w):
        if not isinstance(s, int):
            raise shape_error("upsample2d", f"spatial sizes must be static, got {x.type}", x)
    blocks = broadcast_to(reshape(x, (n, c, h, 1, w, 1)), (n, c, h, sh, w, sw))
    return reshape(blocks, (n, c, h * sh, w * sw))
