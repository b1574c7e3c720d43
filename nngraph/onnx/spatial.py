"""Window geometry shared by ONNX Conv and the pools: auto_pad, pads, ceil_mode,
and the 1-d case run as 2-d with a height of one."""
from __future__ import annotations

from ..ops import elementwise as ew
from ..ops import movement as mv
from ..types import Dim


def ints(ctx, name: str, n: int, default: int) -> tuple:
    v = ctx.attr(name)
    if v is None:
        return (default,) * n
    if len(v) != n:
        raise ctx.error(f"attribute {name}={list(v)} needs {n} entries (one per spatial axis)")
    return tuple(int(a) for a in v)


def spatial_rank(ctx, x, supported=(1, 2)) -> int:
    r = x.ndim - 2
    if r not in supported:
        have = " and ".join(f"{k}-d" for k in supported)
        raise ctx.error(f"{r}-d windows are not supported (input {x.type}); nngraph has {have}")
    for s in x.shape[2:]:
        if isinstance(s, Dim):
            raise ctx.error(f"spatial sizes must be static, input has {x.type}")
    return r


def window_pads(ctx, in_sizes, kernel, strides, dilations, ceil_mode=False) -> list:
    """(begin, end) padding per spatial axis from auto_pad or pads; with ceil_mode the
    end grows so the last partial window is kept (a window must start inside the
    input or the begin padding, as ONNX's reference)."""
    n = len(in_sizes)
    auto = ctx.refuse_unless("auto_pad", ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"), "NOTSET")
    if auto == "VALID":
        pads = [(0, 0)] * n
    elif auto.startswith("SAME"):
        pads = []
        for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return pads
    else:
        p = ints(ctx, "pads", 2 * n, 0)
        pads = [(p[i], p[i + n]) for i in range(n)]
    if min(min(pp) for pp in pads) < 0:
        raise ctx.error(f"negative pads {pads} are not supported")
    if ceil_mode:
        pads = [_ceil_pad(size, k, s, d, b, e) for size, k, s, d, (b, e) in zip(in_sizes, kernel, strides, dilations, pads)]
    return pads


def _ceil_pad(size, k, s, d, b, e) -> tuple:
    span = (k - 1) * d + 1
    out = -(-(size + b + e - span) // s) + 1
    if (out - 1) * s >= size + b:  # the last window would start in the end padding
        out -= 1
    return b, max(e, (out - 1) * s + span - size - b)


def to_2d(x, r: int):
    """[N, C, L] -> [N, C, 1, L] so 1-d windows run on the 2-d ops."""
    return mv.expand_dims(x, 2) if r == 1 else x


def from_2d(y, r: int):
    return mv.squeeze(y, 2) if r == 1 else y


def as_2d_params(r: int, *tuples) -> list:
    """Per-axis tuples of a 1-d window extended with the unit height axis."""
    if r == 2:
        return list(tuples)
    return [((1,) + t) if len(t) == 1 else t for t in tuples]


def weight_kernel(ctx, w) -> tuple:
    """The kernel size of a Conv/ConvTranspose weight [*, *, k...], checked against
    the kernel_shape attribute when the model gives one."""
    kernel = tuple(int(k) for k in w.shape[2:])
    if ctx.attr("kernel_shape") is not None and tuple(ctx.attr("kernel_shape")) != kernel:
        raise ctx.error(f"attribute kernel_shape={list(ctx.attr('kernel_shape'))} contradicts the weight {w.type}")
    return kernel


def add_channel_bias(ctx, y, index: int = 2):
    """y [N, C, spatial...] plus the optional per-channel bias input `index`."""
    return ew.add(y, mv.reshape(ctx.t(index), (1, -1) + (1,) * (y.ndim - 2))) if ctx.has(index) else y
