"""ONNX InstanceNormalization, GroupNormalization and MeanVarianceNormalization:
moments over the normalised axes, then the affine part per channel."""
from __future__ import annotations

from .. import functional as F
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..types import Dim
from .registry import converter


def _normalise(x, axes, eps):
    mean, var = F.moments(x, axes, keepdims=True)
    return ew.mul(ew.sub(x, mean), ew.rsqrt(ew.add(var, eps)))


def _per_channel(v, ndim):
    return mv.reshape(v, (1, -1) + (1,) * (ndim - 2))


@converter("InstanceNormalization", 6, attrs=("epsilon",))
def _instance_norm(ctx):
    """Each (sample, channel) over its spatial axes; scale and B per channel."""
    x = ctx.t(0)
    y = _normalise(x, tuple(range(2, x.ndim)), float(ctx.attr("epsilon", 1e-5)))
    return ew.add(ew.mul(y, _per_channel(ctx.t(1), x.ndim)), _per_channel(ctx.t(2), x.ndim))


@converter("GroupNormalization", 18, attrs=("epsilon", "num_groups", "stash_type"))
def _group_norm(ctx):
    """Channels split into num_groups groups, each (sample, group) normalised; scale and
    bias per channel from opset 21 (per group at 18-20, as the spec then said).
    stash_type=1 (float32 statistics) is what nngraph computes."""
    ctx.refuse_unless("stash_type", (1,), 1)
    x = ctx.t(0)
    g = int(ctx.attr("num_groups"))
    n, c = x.shape[0], x.shape[1]
    if isinstance(c, Dim) or c % g or any(isinstance(s, Dim) for s in x.shape[2:]):
        raise ctx.error(f"num_groups {g} must divide the static channels of {x.type}")
    grouped = mv.reshape(x, (n, g, -1))
    y = mv.reshape(_normalise(grouped, (2,), float(ctx.attr("epsilon", 1e-5))), tuple(x.shape))
    scale, bias = ctx.t(1), ctx.t(2)
    if ctx.opset < 21:
        scale, bias = (mv.reshape(mv.broadcast_to(mv.reshape(v, (g, 1)), (g, c // g)), (c,)) for v in (scale, bias))
    return ew.add(ew.mul(y, _per_channel(scale, x.ndim)), _per_channel(bias, x.ndim))


@converter("MeanVarianceNormalization", 9, attrs=("axes",))
def _mvn(ctx):
    """(x - mean) / sqrt(var) over `axes` (default 0, 2, 3), with ONNX's epsilon 1e-9."""
    x = ctx.t(0)
    axes = tuple(int(a) % x.ndim for a in (ctx.attr("axes") or (0, 2, 3)))
    mean, var = F.moments(x, axes, keepdims=True)
    return ew.div(ew.sub(x, mean), ew.add(ew.sqrt(var), 1e-9))
