"""2-d max and average pooling over the last two axes of NCHW tensors, with PyTorch's
semantics (no ceil mode), and their backward ops as primitives.

Ops and lowering kind: all five are "special" (windowed ops; the fusion engineer
lowers them to loop kernels). They are not "reduction": that kind means a reduction
over whole axes with an ``axes`` attribute, which the lowering relies on.

- ``max_pool2d(x)``, ``avg_pool2d(x)``: each output point reduces (max, or sum times
  1/divisor) over its KH x KW window of the padded input.
- ``max_pool2d_select(x, h)``: each output point takes h at the position of the first
  maximum of x's window (an argmax-select over the window).
- ``max_pool2d_grad(x, gy)``, ``avg_pool2d_grad(gy)``: each input point sums the
  cotangents of the windows that cover it (a transposed window; as a loop kernel it
  is a gather over the output points whose window contains the input point).

Max pooling sends each window's gradient to the FIRST maximal element of the
window in row-major order, as PyTorch does. Padding is -inf for max pooling and
zeros for average pooling; ``count_include_pad`` (default True, as PyTorch) chooses
whether the padded zeros count in the divisor. Padding may be at most half the kernel
(PyTorch's rule), so every window holds at least one real element.

Gradients of gradients: max_pool2d_grad is linear in gy, its transpose is
max_pool2d_select (and the other way round); avg_pool2d_grad is linear and its
transpose is avg_pool2d. Derivatives through the argmax position in x are zero
almost everywhere, so no cotangent flows to x from the selection.
"""
from __future__ import annotations

import numpy as np

from ..semantics import lowest
from ..node import Op, Tensor, make, register, shape_error
from ..types import Dim, TensorType, is_float
from . import elementwise as ew
from .conv import conv_out_size, pair, windows

# ----------------------------------------------------------------------------- attributes and types


def _pool_attrs(op, x, kernel, stride, padding) -> dict:
    k = pair(op, "kernel", kernel, x)
    s = k if stride is None else pair(op, "stride", stride, x)
    p = pair(op, "padding", padding, x)
    if min(k) < 1 or min(s) < 1:
        raise shape_error(op, f"kernel and stride must be >= 1, got kernel={k}, stride={s}", x)
    if min(p) < 0 or p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise shape_error(op, f"padding {p} must be >= 0 and at most half the kernel {k}", x)
    return {"kernel": k, "stride": s, "padding": ((p[0], p[0]), (p[1], p[1]))}


def _check_x(op, x, float_only=True):
    if x.ndim != 4:
        raise shape_error(op, f"{x.name or x.op} must be 4-d (NCHW), got {x.type}", x)
    if float_only and not is_float(x.dtype):
        raise shape_error(op, f"needs a float operand, got {x.dtype}", x)
    if x.dtype == "bool":
        raise shape_error(op, "cannot pool bool; cast it first", x)
    for a in (2, 3):
        if isinstance(x.shape[a], Dim):
            raise shape_error(op, f"spatial sizes must be static; axis {a} of {x.name or x.op} is "
                              f"symbolic ({x.shape[a]})", x)


def _out_hw(op, in_hw, attrs, x) -> tuple:
    return tuple(conv_out_size(op, n, k, s, p, 1, x)
                 for n, k, s, p in zip(in_hw, attrs["kernel"], attrs["stride"], attrs["padding"]))


def _check_cotangent(op, x_shape, gy, attrs, *operands):
    want = (x_shape[0], x_shape[1]) + _out_hw(op, x_shape[2:], attrs, gy)
    if gy.ndim != 4 or tuple(gy.shape) != want:
        raise shape_error(op, f"the cotangent must have the pooled shape [{','.join(map(str, want))}], "
                          f"got {gy.type}", *operands)


def _pool_infer(name, float_only):
    def infer(inputs, attrs):
        (x,) = inputs
        _check_x(name, x, float_only)
        return TensorType(x.dtype, tuple(x.shape[:2]) + _out_hw(name, x.shape[2:], attrs, x))
    return infer


def _max_grad_infer(inputs, attrs):
    x, gy = inputs
    _check_x("max_pool2d_grad", x)
    if gy.dtype != x.dtype:
        raise shape_error("max_pool2d_grad", f"dtypes differ: {x.dtype} and {gy.dtype}", x, gy)
    _check_cotangent("max_pool2d_grad", x.shape, gy, attrs, x, gy)
    return x.type


def _max_select_infer(inputs, attrs):
    """h of any dtype (a float cotangent, or int64 positions: ONNX MaxPool's Indices)."""
    x, h = inputs
    _check_x("max_pool2d_select", x, float_only=False)
    if tuple(h.shape) != tuple(x.shape):
        raise shape_error("max_pool2d_select", f"h must have x's shape {x.type}, got {h.type}", x, h)
    return TensorType(h.dtype, tuple(x.shape[:2]) + _out_hw("max_pool2d_select", x.shape[2:], attrs, x))


def _avg_grad_infer(inputs, attrs):
    (gy,) = inputs
    op = "avg_pool2d_grad"
    if gy.ndim != 4 or not is_float(gy.dtype):
        raise shape_error(op, f"the cotangent must be a 4-d float tensor, got {gy.type}", gy)
    x_shape = tuple(gy.shape[:2]) + tuple(attrs["input_hw"])
    _check_cotangent(op, x_shape, gy, attrs, gy)
    return TensorType(gy.dtype, x_shape)


# ----------------------------------------------------------------------------- NumPy references


def _pad(x, padding, value):
    (t, b), (l, r) = padding
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def _win(xp, attrs, out_hw):
    """[N, C, OH, OW, KH, KW] view of the padded input's windows."""
    return windows(xp, 1, attrs["kernel"], out_hw, attrs["stride"], (1, 1))[:, 0]


def _argmax_positions(x, attrs, out_hw):
    """Padded-coordinate (row, col) of the first maximum of every window, each [N, C, OH, OW]."""
    xp = _pad(x, attrs["padding"], lowest(x.dtype.name))
    win = _win(xp, attrs, out_hw)
    kh, kw = attrs["kernel"]
    arg = np.argmax(win.reshape(win.shape[:4] + (kh * kw,)), axis=-1)
    oh, ow = out_hw
    rows = np.arange(oh).reshape(oh, 1) * attrs["stride"][0] + arg // kw
    cols = np.arange(ow).reshape(1, ow) * attrs["stride"][1] + arg % kw
    return rows, cols, xp.shape


def _max_ref(ctx, x):
    xp = _pad(x, ctx.attrs["padding"], lowest(x.dtype.name))
    return _win(xp, ctx.attrs, ctx.node.shape[2:]).max(axis=(4, 5))


def _max_grad_ref(ctx, x, gy):
    out_hw = gy.shape[2:]
    rows, cols, (N, C, Hp, Wp) = _argmax_positions(x, ctx.attrs, out_hw)
    nc = np.arange(N * C).reshape(N, C, 1, 1)
    flat = (nc * Hp + rows) * Wp + cols
    dxp = np.bincount(flat.ravel(), weights=gy.astype(np.float64).ravel(), minlength=N * C * Hp * Wp)
    dxp = dxp.reshape(N, C, Hp, Wp)
    (t, _), (l, _) = ctx.attrs["padding"]
    return dxp[:, :, t: t + x.shape[2], l: l + x.shape[3]].astype(x.dtype)


def _max_select_ref(ctx, x, h):
    out_hw = ctx.node.shape[2:]
    rows, cols, (N, C, Hp, Wp) = _argmax_positions(x, ctx.attrs, out_hw)
    hp = _pad(h, ctx.attrs["padding"], 0)
    n = np.arange(N).reshape(N, 1, 1, 1)
    c = np.arange(C).reshape(1, C, 1, 1)
    return hp[n, c, rows, cols]


def _divisor(attrs, in_hw, out_hw, dt):
    """What each window's sum is divided by: KH*KW, or its count of real elements."""
    kh, kw = attrs["kernel"]
    if attrs["count_include_pad"]:
        return np.asarray(kh * kw, dt)
    ones = _pad(np.ones((1, 1) + tuple(in_hw), dt), attrs["padding"], 0)
    return _win(ones, attrs, out_hw).sum(axis=(4, 5))


def _avg_ref(ctx, x):
    out_hw = ctx.node.shape[2:]
    xp = _pad(x, ctx.attrs["padding"], 0)
    s = _win(xp, ctx.attrs, out_hw).sum(axis=(4, 5))
    return s / _divisor(ctx.attrs, x.shape[2:], out_hw, x.dtype)


def _avg_grad_ref(ctx, gy):
    a = ctx.attrs
    (H, W), (kh, kw), (sh, sw) = a["input_hw"], a["kernel"], a["stride"]
    (t, b), (l, r) = a["padding"]
    N, C, OH, OW = gy.shape
    share = gy / _divisor(a, (H, W), (OH, OW), gy.dtype)
    dxp = np.zeros((N, C, H + t + b, W + l + r), gy.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i: i + sh * (OH - 1) + 1: sh, j: j + sw * (OW - 1) + 1: sw] += share
    return dxp[:, :, t: t + H, l: l + W]


# ----------------------------------------------------------------------------- vjps


def _pool_common(n) -> dict:
    return {k: n.attrs[k] for k in ("kernel", "stride", "padding")}


def _max_vjp(n, g, needs):
    return (make("max_pool2d_grad", (n.inputs[0], g), **_pool_common(n)),)


def _max_grad_vjp(n, h, needs):
    x, _ = n.inputs  # the argmax position is piecewise constant in x: no cotangent for x
    return None, (make("max_pool2d_select", (x, h), **_pool_common(n)) if needs[1] else None)


def _max_select_vjp(n, g, needs):
    x, h = n.inputs
    differentiable = needs[1] and is_float(h.dtype) and h.dtype == x.dtype
    return None, (make("max_pool2d_grad", (x, g), **_pool_common(n)) if differentiable else None)


def _avg_vjp(n, g, needs):
    x = n.inputs[0]
    return (make("avg_pool2d_grad", (g,), input_hw=tuple(x.shape[2:]), count_include_pad=n.attrs["count_include_pad"],
                 **_pool_common(n)),)


def _avg_grad_vjp(n, h, needs):
    return (make("avg_pool2d", (h,), count_include_pad=n.attrs["count_include_pad"], **_pool_common(n)),)


register(Op("max_pool2d", "special", _pool_infer("max_pool2d", False), _max_ref, _max_vjp,
            doc="max over KH x KW windows of the -inf padded input"))
register(Op("max_pool2d_grad", "special", _max_grad_infer, _max_grad_ref, _max_grad_vjp,
            doc="each window's cotangent sent to the window's first maximum of x"))
register(Op("max_pool2d_select", "special", _max_select_infer, _max_select_ref, _max_select_vjp,
            doc="h at the position of the first maximum of each window of x (transpose of max_pool2d_grad)"))
register(Op("avg_pool2d", "special", _pool_infer("avg_pool2d", True), _avg_ref, _avg_vjp,
            doc="mean over KH x KW windows of the zero padded input"))
register(Op("avg_pool2d_grad", "special", _avg_grad_infer, _avg_grad_ref, _avg_grad_vjp,
            doc="each window's cotangent shared among its elements (transpose of avg_pool2d)"))


# ----------------------------------------------------------------------------- builders


def max_pool2d(x, kernel, stride=None, padding=0) -> Tensor:
    """Max over kernel windows of x: [N, C, H, W]; stride defaults to the kernel;
    padding (int or pair, at most half the kernel) pads with -inf."""
    (x,) = ew._coerce(x)
    _check_x("max_pool2d", x, float_only=False)
    return make("max_pool2d", (x,), **_pool_attrs("max_pool2d", x, kernel, stride, padding))


def max_pool2d_select(x, h, kernel, stride=None, padding=0) -> Tensor:
    """h (x's shape, any dtype) at the first maximum (row-major) of each window of x,
    the windows of max_pool2d(x, kernel, stride, padding): with h the flat position of
    every element, the argmax indices of the pooling (ONNX MaxPool's Indices)."""
    x, h = ew._coerce(x, h)
    _check_x("max_pool2d_select", x, float_only=False)
    return make("max_pool2d_select", (x, h), **_pool_attrs("max_pool2d_select", x, kernel, stride, padding))


def avg_pool2d(x, kernel, stride=None, padding=0, count_include_pad=True) -> Tensor:
    """Mean over kernel windows of x: [N, C, H, W], zero padding; with
    count_include_pad=False the padded zeros do not count in the divisor."""
    (x,) = ew._coerce(x)
    _check_x("avg_pool2d", x)
    return make("avg_pool2d", (x,), count_include_pad=bool(count_include_pad),
                **_pool_attrs("avg_pool2d", x, kernel, stride, padding))
