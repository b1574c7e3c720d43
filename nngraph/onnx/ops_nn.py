"""ONNX convolution, pooling, normalisation and dropout operators."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..ops import conv as cv
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..ops import pool as pl
from ..ops import reduce as rd
from ..types import is_float
from .conv3d import conv3d
from .registry import converter
from .spatial import add_channel_bias, from_2d, ints, spatial_rank, to_2d, weight_kernel, window_pads

_WINDOW = ("auto_pad", "kernel_shape", "pads", "strides", "dilations")


def _geometry(ctx, x, kernel, ceil_mode=False):
    """(r, strides, dilations, pads) of a window op, all given as 2-d."""
    r = len(kernel)
    strides, dilations = ints(ctx, "strides", r, 1), ints(ctx, "dilations", r, 1)
    pads = window_pads(ctx, x.shape[2:], kernel, strides, dilations, ceil_mode)
    if r == 1:
        return r, (1,) + strides, (1,) + dilations, [(0, 0)] + pads
    return r, strides, dilations, pads


@converter("Conv", 1, attrs=_WINDOW + ("group",))
def _conv(ctx):
    x, w = ctx.t(0), ctx.t(1)
    r = spatial_rank(ctx, x, (1, 2, 3))
    r, strides, dilations, pads = _geometry(ctx, x, weight_kernel(ctx, w))
    if r == 3:
        y = conv3d(ctx, x, w, strides, dilations, pads, int(ctx.attr("group", 1)))
        return add_channel_bias(ctx, y)
    y = cv.conv2d(to_2d(x, r), to_2d(w, r), stride=strides, padding=tuple(pads), dilation=dilations,
                  groups=int(ctx.attr("group", 1)))
    return from_2d(add_channel_bias(ctx, y), r)


def _pool_kernel(ctx, x):
    r = spatial_rank(ctx, x, (1, 2, 3))
    kernel = ints(ctx, "kernel_shape", r, 0)
    if ctx.attr("kernel_shape") is None:
        raise ctx.error("attribute kernel_shape is required")
    return kernel


def _needs_slices(ctx, kernel) -> bool:
    """3-d windows and dilated ones have no built-in pool: they take the slice path."""
    return len(kernel) == 3 or set(ints(ctx, "dilations", len(kernel), 1)) != {1}


def _window_slices(ctx, xp, kernel, strides, dilations, out_sizes):
    """One strided slice of the padded input per kernel offset."""
    for off in np.ndindex(*kernel):
        spec = [(0, xp.shape[0], 1), (0, xp.shape[1], 1)]
        for o, k, s, d, n in zip(off, kernel, strides, dilations, out_sizes):
            spec.append((o * d, o * d + (n - 1) * s + 1, s))
        yield spec


def _pool_by_slices(ctx, x, kernel, kind: str):
    """Max, average or sum ("max", "average", "sum") over windows as an elementwise
    max/sum of shifted strided slices."""
    strides, dilations = ints(ctx, "strides", len(kernel), 1), ints(ctx, "dilations", len(kernel), 1)
    sizes = [int(v) for v in x.shape[2:]]
    pads = window_pads(ctx, sizes, kernel, strides, dilations, bool(ctx.attr("ceil_mode", 0)))
    padded = [n + b + e for n, (b, e) in zip(sizes, pads)]
    outs = [(p - (k - 1) * d - 1) // s + 1 for p, k, s, d in zip(padded, kernel, strides, dilations)]
    average = kind == "average"
    low = 0.0 if kind != "max" else float(np.finfo(np.dtype(x.dtype)).min if is_float(x.dtype)
                                          else np.iinfo(np.dtype(x.dtype)).min)
    xp = mv.pad(x, [(0, 0), (0, 0)] + list(pads), low)
    parts = [mv.slice_(xp, spec) for spec in _window_slices(ctx, xp, kernel, strides, dilations, outs)]
    while len(parts) > 1:  # a balanced tree: a long chain would make one very deep fused expression
        pairs = [(ew.maximum if kind == "max" else ew.add)(a, b) for a, b in zip(parts[::2], parts[1::2])]
        parts = pairs + parts[len(pairs) * 2:]
    acc = parts[0]
    if not average:
        return acc
    plain = window_pads(ctx, sizes, kernel, strides, dilations)
    mask = np.zeros((1, 1) + tuple(padded), np.dtype(x.dtype))
    include = bool(ctx.attr("count_include_pad", 0))
    mask[(slice(None), slice(None)) + tuple(slice(0 if include else b, b + n + (pe if include else 0))
                                            for n, (b, _), (_, pe) in zip(sizes, pads, plain))] = 1
    counts = sum(mask[tuple(slice(b, e, st) for b, e, st in spec)] for spec in
                 _window_slices(ctx, mask, kernel, strides, dilations, outs))
    return ew.div(acc, counts)


def _fits_builtin(pads, kernel) -> bool:
    """The built-in pools take symmetric padding of at most half the kernel."""
    return all(b == e and 2 * b <= k for (b, e), k in zip(pads, kernel))


@converter("MaxPool", 1, attrs=_WINDOW + ("ceil_mode", "storage_order"))
def _max_pool(ctx):
    """The Indices output (opset 8+): the flat position in x of each window's first
    maximum (ONNX's reference keeps the first of equal values), its spatial part
    column-major when storage_order=1; 1-d and 2-d windows without dilation."""
    x = ctx.t(0)
    kernel = _pool_kernel(ctx, x)
    indices = ctx.n_outputs > 1
    if _needs_slices(ctx, kernel):
        if indices:
            raise ctx.error(f"the Indices output of a {len(kernel)}-d or dilated window is not supported")
        return _pool_by_slices(ctx, x, kernel, "max")
    r, strides, _, pads = _geometry(ctx, x, kernel, bool(ctx.attr("ceil_mode", 0)))
    k2, x2 = ((1,) + kernel if r == 1 else kernel), to_2d(x, r)
    h2 = to_2d(_flat_positions(x, bool(ctx.attr("storage_order", 0))), r) if indices else None
    if _fits_builtin(pads, k2):
        padding = tuple(b for b, _ in pads)
    else:
        low = np.finfo(np.dtype(x.dtype)).min if is_float(x.dtype) else np.iinfo(np.dtype(x.dtype)).min
        x2 = mv.pad(x2, [(0, 0), (0, 0)] + list(pads), float(low))
        h2 = mv.pad(h2, [(0, 0), (0, 0)] + list(pads), 0) if indices else None
        padding = 0
    y = from_2d(pl.max_pool2d(x2, k2, strides, padding), r)
    return [y, from_2d(pl.max_pool2d_select(x2, h2, k2, strides, padding), r)] if indices else y


def _flat_positions(x, column_major: bool):
    """int64 [N, C, spatial...]: each element's flat position in x, row-major over
    (N, C) and over the spatial axes, or column-major over the spatial axes."""
    shape = tuple(x.shape)
    axes = [ew.iota(shape, a, "int64") for a in range(x.ndim)]
    spatial = list(range(2, x.ndim))
    if column_major:
        spatial.reverse()
    pos = ew.add(ew.mul(axes[0], ew.numel(shape[1:2], "int64")), axes[1])
    for a in spatial:
        pos = ew.add(ew.mul(pos, ew.numel((shape[a],), "int64")), axes[a])
    return pos


@converter("AveragePool", 1, attrs=_WINDOW + ("ceil_mode", "count_include_pad"))
def _avg_pool(ctx):
    """Zero padding; the divisor counts the explicit pads when count_include_pad=1,
    never the extra end of ceil_mode (as ONNX's reference and PyTorch)."""
    x = ctx.t(0)
    kernel = _pool_kernel(ctx, x)
    if _needs_slices(ctx, kernel):
        return _pool_by_slices(ctx, x, kernel, "average")
    include = bool(ctx.attr("count_include_pad", 0))
    plain = window_pads(ctx, x.shape[2:], kernel, ints(ctx, "strides", len(kernel), 1), (1,) * len(kernel))
    r, strides, _, pads = _geometry(ctx, x, kernel, bool(ctx.attr("ceil_mode", 0)))
    plain = [(0, 0)] + plain if r == 1 else plain
    k2, x2 = ((1,) + kernel if r == 1 else kernel), to_2d(x, r)
    if _fits_builtin(pads, k2) and pads == plain:
        return from_2d(pl.avg_pool2d(x2, k2, strides, tuple(b for b, _ in pads), count_include_pad=include), r)
    area = float(np.prod(k2))
    sums = ew.mul(pl.avg_pool2d(mv.pad(x2, [(0, 0), (0, 0)] + list(pads)), k2, strides, 0), area)
    hw = tuple(int(s) for s in x2.shape[2:])
    mask = np.zeros((1, 1) + tuple(h + b + e for h, (b, e) in zip(hw, pads)), np.dtype(x.dtype))
    counted = [(b, b + h) if not include else (0, b + h + pe) for h, (b, _), (_, pe) in zip(hw, pads, plain)]
    mask[:, :, counted[0][0]:counted[0][1], counted[1][0]:counted[1][1]] = 1
    counts = _window_sums(mask, k2, strides)
    return from_2d(ew.div(sums, counts.astype(mask.dtype)), r)


def _window_sums(a: np.ndarray, kernel, strides) -> np.ndarray:
    """Sum over each pooling window of a [1, 1, H, W] array, at import."""
    (kh, kw), (sh, sw) = kernel, strides
    oh, ow = (a.shape[2] - kh) // sh + 1, (a.shape[3] - kw) // sw + 1
    out = np.zeros((1, 1, oh, ow), a.dtype)
    for i in range(kh):
        for j in range(kw):
            out += a[:, :, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw]
    return out


@converter("LpPool", 2, attrs=_WINDOW + ("ceil_mode", "p"))
def _lp_pool(ctx):
    """(sum over the window of |x|^p)^(1/p), padding counting as zeros."""
    x = ctx.t(0)
    kernel = _pool_kernel(ctx, x)
    p = float(ctx.attr("p", 2))
    if p <= 0:
        raise ctx.error(f"attribute p={p} must be positive")
    total = _pool_by_slices(ctx, ew.pow(ew.abs(x), p) if p != 1 else ew.abs(x), kernel, "sum")
    return ew.pow(total, 1.0 / p) if p != 1 else total


@converter("GlobalAveragePool", 1)
def _global_avg_pool(ctx):
    x = ctx.t(0)
    return rd.mean(x, tuple(range(2, x.ndim)), keepdims=True)


@converter("GlobalMaxPool", 1)
def _global_max_pool(ctx):
    x = ctx.t(0)
    return rd.max(x, tuple(range(2, x.ndim)), keepdims=True)


@converter("BatchNormalization", 6, attrs=("epsilon", "momentum", "spatial", "is_test", "training_mode"))
def _batch_norm(ctx):
    """Inference form with the running statistics; `is_test` (opset 6) names the same
    form. training_mode=1 (opset 14 on) normalises with the batch statistics and
    returns the running statistics moved toward them by `momentum`; the saved_*
    outputs of opsets 9-13's training form are refused."""
    ctx.refuse_unless("spatial", (1,), 1)
    training = ctx.refuse_unless("training_mode", (0, 1), 0)
    x, eps = ctx.t(0), float(ctx.attr("epsilon", 1e-5))
    if training:
        return _batch_norm_training(ctx, x, eps)
    if ctx.n_outputs > 1:
        raise ctx.error("outputs running_mean/running_var/saved_* (training mode) are not supported "
                        "without training_mode=1")
    return F.batch_norm(x, ctx.t(1), ctx.t(2), ctx.t(3), ctx.t(4), axis=1, eps=eps)


def _batch_norm_training(ctx, x, eps: float) -> list:
    """(y, running_mean, running_var) of training mode, as ONNX's reference: the batch's
    biased variance both normalises and updates the running variance."""
    if ctx.opset < 14:
        raise ctx.error("training_mode=1 before opset 14 is not supported")
    others = tuple(a for a in range(x.ndim) if a != 1)
    mean, var = F.moments(x, others)
    y = F.batch_norm(x, ctx.t(1), ctx.t(2), mean, var, axis=1, eps=eps)
    momentum = float(ctx.attr("momentum", 0.9))
    running = [ew.add(ew.mul(ctx.t(k), momentum), ew.mul(batch, 1.0 - momentum))
               for k, batch in ((3, mean), (4, var))]
    return [y] + running[:max(ctx.n_outputs, 1) - 1]


@converter("LRN", 1, attrs=("alpha", "beta", "bias", "size"))
def _lrn(ctx):
    """x / (bias + alpha/size * sum of x^2 over a window of `size` channels)^beta."""
    x = ctx.t(0)
    size = int(ctx.attr("size"))
    alpha, beta, bias = ctx.attr("alpha", 1e-4), ctx.attr("beta", 0.75), ctx.attr("bias", 1.0)
    c = x.shape[1]
    if not isinstance(c, int):
        raise ctx.error(f"the channel axis must be static, input has {x.type}")
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = mv.pad(ew.mul(x, x), [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    full = [(0, s, 1) for s in sq.shape]
    total = None
    for k in range(size):
        part = mv.slice_(sq, [full[0], (k, k + c, 1)] + full[2:])
        total = part if total is None else ew.add(total, part)
    return ew.div(x, ew.pow(ew.add(ew.mul(total, alpha / size), bias), beta))


@converter("Gemm", 6, attrs=("alpha", "beta", "transA", "transB", "broadcast"))
def _gemm(ctx):
    """`broadcast` (opset 6) allowed C to broadcast, as it always does since."""
    a, b = ctx.t(0), ctx.t(1)
    if ctx.attr("transA", 0):
        a = mv.transpose(a)
    if ctx.attr("transB", 0):
        b = mv.transpose(b)
    y = a @ b
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    if alpha != 1.0:
        y = ew.mul(y, alpha)
    if ctx.has(2) and beta != 0.0:
        c = ctx.t(2)
        y = ew.add(y, c if beta == 1.0 else ew.mul(c, beta))
    return y


@converter("MatMul", 1)
def _matmul(ctx):
    return ctx.t(0) @ ctx.t(1)


def _softmax_axes(ctx, x):
    """Opset < 13: the axes from `axis` (default 1) on, flattened; 13+: one axis (default -1)."""
    if ctx.opset < 13:
        axis = int(ctx.attr("axis", 1)) % max(x.ndim, 1)
        return tuple(range(axis, x.ndim))
    return int(ctx.attr("axis", -1))


@converter("Softmax", 1, attrs=("axis",))
def _softmax(ctx):
    x = ctx.t(0)
    return F.softmax(x, _softmax_axes(ctx, x))


@converter("LogSoftmax", 1, attrs=("axis",))
def _log_softmax(ctx):
    x = ctx.t(0)
    return F.log_softmax(x, _softmax_axes(ctx, x))


@converter("LayerNormalization", 17, attrs=("axis", "epsilon", "stash_type"))
def _layer_norm(ctx):
    """Normalise over the axes from `axis` on; stash_type=1 (float32 statistics) is
    what nngraph computes for float32, and float64 inputs keep float64."""
    ctx.refuse_unless("stash_type", (1,), 1)
    x = ctx.t(0)
    axis = int(ctx.attr("axis", -1)) % x.ndim
    axes, eps = tuple(range(axis, x.ndim)), float(ctx.attr("epsilon", 1e-5))
    mean, var = F.moments(x, axes, keepdims=True)
    inv = ew.rsqrt(ew.add(var, eps))
    y = ew.mul(ew.sub(x, mean), inv)
    y = ew.mul(y, ctx.t(1))
    if ctx.has(2):
        y = ew.add(y, ctx.t(2))
    return [y, mean, inv][:max(ctx.n_outputs, 1)]


@converter("Dropout", 6, attrs=("ratio", "is_test", "seed"))
def _dropout(ctx):
    """Inference: the identity (and an all-true mask). Training mode (input
    training_mode true, opset 12 on) keeps each element with probability 1 - ratio and
    scales it by 1/(1 - ratio); the mask comes from nngraph's counter-based generator
    (nngraph/ops/random.py) keyed by the `seed` attribute and a step counter, so the
    same seed gives the same masks on every nngraph target, but not the masks of
    another runtime (ONNX's reference draws from NumPy)."""
    x = ctx.t(0)
    training = ctx.has(2) and bool(np.asarray(ctx.const(2, "training_mode")).reshape(-1)[0])
    if training:   # the ratio matters (and must be known at import) only when training
        ratio = float(np.asarray(ctx.const(1, "ratio")).reshape(-1)[0]) if ctx.has(1) else float(ctx.attr("ratio", 0.5))
        if ratio != 0.0:
            return _dropout_training(ctx, x, ratio)
    outs = [x]
    if ctx.n_outputs > 1:
        outs.append(mv.broadcast_to(np.asarray(True), x.shape))
    return outs


def _dropout_training(ctx, x, ratio: float) -> list:
    from ..ops import random as rnd
    if not 0.0 <= ratio < 1.0:
        raise ctx.error(f"ratio={ratio} is not supported in training mode (it must be in [0, 1))")
    if not is_float(x.dtype):
        raise ctx.error(f"input data must be a float tensor in training mode, got {x.type}")
    seed = ctx.attr("seed")
    keep = ew.greater_equal(rnd.uniform(x.shape, seed=seed), ew.constant(np.asarray(ratio, np.float32)))
    y = ew.where(keep, ew.mul(x, 1.0 / (1.0 - ratio)), ew.zeros_like(x))
    return [y, keep][:max(ctx.n_outputs, 1)]

