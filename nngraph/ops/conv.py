"""2-d convolution (NCHW input, OIHW weights) and its two gradients, as primitives.

Three ops, all lowered as contractions ("contraction" kind: implicit GEMM or
im2col + GEMM):

- ``conv2d(x, w)``: y[n,o,p,q] = sum_{c,i,j} xpad[n, g*Cg+c, p*sh+i*dh, q*sw+j*dw] * w[o,c,i,j]
  where g = o // (O/groups) and Cg = C/groups.
- ``conv2d_grad_input(gy, w)``: the transpose of conv2d in x (a "deconvolution"):
  <conv2d_grad_input(gy, w), h> = <gy, conv2d(h, w)>.
- ``conv2d_grad_filter(x, gy)``: the transpose of conv2d in w:
  <conv2d_grad_filter(x, gy), h> = <gy, conv2d(x, h)>.

Each is bilinear, so each one's vjp is one of the three again and gradients of
gradients stay inside this closed set.

Attributes (the same on all three): ``stride=(sh,sw)``, ``padding=((top,bottom),
(left,right))`` zero padding, ``dilation=(dh,dw)``, ``groups``. The gradients also
carry the size they cannot infer: ``input_hw=(H,W)`` and ``kernel_hw=(KH,KW)``.
The batch size may be symbolic; channels and spatial sizes must be static.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..node import Op, Tensor, make, register, shape_error
from ..sizes import join
from ..types import Dim, TensorType, is_float, np_dtype, promote
from . import elementwise as ew

# ----------------------------------------------------------------------------- attribute helpers


def pair(op: str, name: str, v, x=None) -> tuple:
    """An int or a pair of ints -> (a, b); positive unless it is padding."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (int(v), int(v))
    try:
        a, b = (int(t) for t in v)
    except (TypeError, ValueError):
        raise shape_error(op, f"{name} must be an int or a pair of ints, got {v!r}", *([x] if x is not None else [])) from None
    return a, b


def conv_out_size(op: str, size: int, k: int, s: int, pads: tuple, d: int, x=None) -> int:
    """floor((size + before + after - d*(k-1) - 1) / s) + 1, checked to be >= 1."""
    span = d * (k - 1) + 1
    padded = size + pads[0] + pads[1]
    if padded < span:
        raise shape_error(op, f"the (dilated) window {span} is larger than the padded input {padded} "
                          f"(size {size}, padding {pads})", *([x] if x is not None else []))
    return (padded - span) // s + 1


def _norm_padding(op, padding, kernel_hw, stride, dilation, in_hw, x=None) -> tuple:
    """padding: int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same" (TensorFlow's
    rule: out = ceil(in / stride), extra padding on the bottom/right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            out = []
            for size, k, s, d in zip(in_hw, kernel_hw, stride, dilation):
                o = -(-size // s)
                total = max((o - 1) * s + d * (k - 1) + 1 - size, 0)
                out.append((total // 2, total - total // 2))
            return tuple(out)
        raise shape_error(op, f"padding must be an int, pairs, 'same' or 'valid', got {padding!r}",
                          *([x] if x is not None else []))
    if isinstance(padding, (int, np.integer)):
        padding = (padding, padding)
    try:
        items = list(padding)
    except TypeError:
        raise shape_error(op, f"bad padding {padding!r}", *([x] if x is not None else [])) from None
    if len(items) != 2:
        raise shape_error(op, f"padding needs one entry per spatial axis (2), got {padding!r}",
                          *([x] if x is not None else []))
    out = []
    for p in items:
        lo, hi = pair(op, "padding", p, x)
        if lo < 0 or hi < 0:
            raise shape_error(op, f"padding must be >= 0, got {padding!r}", *([x] if x is not None else []))
        out.append((lo, hi))
    return tuple(out)


def _check_positive(op, attrs, *operands):
    for name in ("stride", "dilation"):
        if min(attrs[name]) < 1:
            raise shape_error(op, f"{name} must be >= 1, got {attrs[name]}", *operands)
    if attrs["groups"] < 1:
        raise shape_error(op, f"groups must be >= 1, got {attrs['groups']}", *operands)


def _static(op, t: Tensor, axes, what: str):
    for a in axes:
        if isinstance(t.shape[a], Dim):
            raise shape_error(op, f"{what} must be static; axis {a} of {t.name or t.op} is symbolic "
                              f"({t.shape[a]})", t)


def _float_pair(op, a, b) -> str:
    if not (is_float(a.dtype) and is_float(b.dtype)):
        raise shape_error(op, f"needs float operands, got {a.dtype} and {b.dtype}", a, b)
    return promote(a.dtype, b.dtype)


def _rank4(op, *ts):
    for t in ts:
        if t.ndim != 4:
            raise shape_error(op, f"{t.name or t.op} must be 4-d (NCHW / OIHW), got {t.type}", *ts)


def _out_hw(op, in_hw, kernel_hw, attrs, x=None) -> tuple:
    return tuple(conv_out_size(op, n, k, s, p, d, x) for n, k, s, p, d in
                 zip(in_hw, kernel_hw, attrs["stride"], attrs["padding"], attrs["dilation"]))


# ----------------------------------------------------------------------------- type inference


def _conv_infer(inputs, attrs):
    x, w = inputs
    op = "conv2d"
    _rank4(op, x, w)
    dt = _float_pair(op, x, w)
    _check_positive(op, attrs, x, w)
    _static(op, x, (1, 2, 3), "input channels and spatial sizes")
    _static(op, w, (0, 1, 2, 3), "the filter's shape")
    g = attrs["groups"]
    C, O, Cg = x.shape[1], w.shape[0], w.shape[1]
    if C % g or O % g:
        raise shape_error(op, f"groups={g} must divide the input channels ({C}) and the output channels ({O})",
                          x, w)
    if C // g != Cg:
        raise shape_error(op, f"input {x.name or 'x'}: {x.type} has {C} channels, so with groups={g} the filter "
                          f"{w.name or 'w'}: {w.type} must have {C // g} input channels (axis 1), not {Cg}", x, w)
    oh, ow = _out_hw(op, x.shape[2:], w.shape[2:], attrs, x)
    return TensorType(dt, (x.shape[0], O, oh, ow))


def _grad_input_infer(inputs, attrs):
    gy, w = inputs
    op = "conv2d_grad_input"
    _rank4(op, gy, w)
    dt = _float_pair(op, gy, w)
    _check_positive(op, attrs, gy, w)
    _static(op, gy, (1, 2, 3), "output channels and spatial sizes")
    _static(op, w, (0, 1, 2, 3), "the filter's shape")
    g = attrs["groups"]
    O, Cg = w.shape[0], w.shape[1]
    if O % g or gy.shape[1] != O:
        raise shape_error(op, f"the cotangent has {gy.shape[1]} channels, the filter {O} outputs "
                          f"(groups={g} must divide it)", gy, w)
    want = _out_hw(op, attrs["input_hw"], w.shape[2:], attrs, gy)
    if tuple(gy.shape[2:]) != want:
        raise shape_error(op, f"the cotangent's spatial size {tuple(gy.shape[2:])} is not the conv2d output "
                          f"size {want} for input_hw={attrs['input_hw']}", gy, w)
    return TensorType(dt, (gy.shape[0], Cg * g) + tuple(attrs["input_hw"]))


def _grad_filter_infer(inputs, attrs):
    x, gy = inputs
    op = "conv2d_grad_filter"
    _rank4(op, x, gy)
    dt = _float_pair(op, x, gy)
    _check_positive(op, attrs, x, gy)
    _static(op, x, (1, 2, 3), "input channels and spatial sizes")
    _static(op, gy, (1, 2, 3), "output channels and spatial sizes")
    if join(x.shape[0], gy.shape[0]) is None:
        raise shape_error(op, f"batch sizes differ: {x.shape[0]} and {gy.shape[0]}", x, gy)
    g = attrs["groups"]
    C, O = x.shape[1], gy.shape[1]
    if C % g or O % g:
        raise shape_error(op, f"groups={g} must divide the input channels ({C}) and the output channels ({O})",
                          x, gy)
    want = _out_hw(op, x.shape[2:], attrs["kernel_hw"], attrs, x)
    if tuple(gy.shape[2:]) != want:
        raise shape_error(op, f"the cotangent's spatial size {tuple(gy.shape[2:])} is not the conv2d output "
                          f"size {want} for kernel_hw={attrs['kernel_hw']}", x, gy)
    return TensorType(dt, (O, C // g) + tuple(attrs["kernel_hw"]))


# ----------------------------------------------------------------------------- NumPy references


def _pad(x, padding):
    (t, b), (l, r) = padding
    if t == b == l == r == 0:
        return np.ascontiguousarray(x)
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))


def windows(xp: np.ndarray, groups: int, kernel_hw, out_hw, stride, dilation) -> np.ndarray:
    """A read-only view [N, G, C/G, OH, OW, KH, KW] of the padded input's windows (im2col)."""
    xp = np.ascontiguousarray(xp)
    N, C = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    shape = (N, groups, C // groups) + tuple(out_hw) + tuple(kernel_hw)
    strides = (s0, s1 * (C // groups), s1, s2 * stride[0], s3 * stride[1], s2 * dilation[0], s3 * dilation[1])
    return as_strided(xp, shape, strides, writeable=False)


def _grouped(a: np.ndarray, groups: int, axis: int) -> np.ndarray:
    """Split `axis` into (groups, size/groups)."""
    s = a.shape
    return a.reshape(s[:axis] + (groups, s[axis] // groups) + s[axis + 1:])


def _conv_ref(ctx, x, w):
    a = ctx.attrs
    dt = np_dtype(ctx.node.dtype)
    x, w = x.astype(dt, copy=False), w.astype(dt, copy=False)
    g = a["groups"]
    N, O, OH, OW = x.shape[0], w.shape[0], *ctx.node.shape[2:]
    win = windows(_pad(x, a["padding"]), g, w.shape[2:], (OH, OW), a["stride"], a["dilation"])
    y = np.einsum("ngchwij,gocij->ngohw", win, _grouped(w, g, 0), optimize=True)
    return y.reshape(N, O, OH, OW)


def _grad_input_ref(ctx, gy, w):
    a = ctx.attrs
    dt = np_dtype(ctx.node.dtype)
    gy, w = gy.astype(dt, copy=False), w.astype(dt, copy=False)
    g = a["groups"]
    (H, W), (sh, sw), (dh, dw) = a["input_hw"], a["stride"], a["dilation"]
    (pt, pb), (pl, pr) = a["padding"]
    N, OH, OW = gy.shape[0], gy.shape[2], gy.shape[3]
    KH, KW = w.shape[2:]
    cols = np.einsum("ngohw,gocij->ngchwij", _grouped(gy, g, 1), _grouped(w, g, 0), optimize=True)
    # [N, C, OH, OW, KH, KW]; C spelled out: with N = 0 a -1 could stand for any size
    cols = cols.reshape((N, cols.shape[1] * cols.shape[2]) + cols.shape[3:])
    xp = np.zeros((N, cols.shape[1], H + pt + pb, W + pl + pr), dt)
    for i in range(KH):
        for j in range(KW):
            xp[:, :, i * dh: i * dh + sh * (OH - 1) + 1: sh, j * dw: j * dw + sw * (OW - 1) + 1: sw] += cols[..., i, j]
    return xp[:, :, pt: pt + H, pl: pl + W]


def _grad_filter_ref(ctx, x, gy):
    a = ctx.attrs
    dt = np_dtype(ctx.node.dtype)
    x, gy = x.astype(dt, copy=False), gy.astype(dt, copy=False)
    g = a["groups"]
    win = windows(_pad(x, a["padding"]), g, a["kernel_hw"], gy.shape[2:], a["stride"], a["dilation"])
    dw = np.einsum("ngchwij,ngohw->gocij", win, _grouped(gy, g, 1), optimize=True)
    return dw.reshape(ctx.node.shape)


# ----------------------------------------------------------------------------- vjps (each bilinear op's
# transposes are the other two)


def _common(n) -> dict:
    return {k: n.attrs[k] for k in ("stride", "padding", "dilation", "groups")}


def _conv_vjp(n, g, needs):
    x, w = n.inputs
    gx = conv2d_grad_input(g, w, input_hw=x.shape[2:], **_common(n)) if needs[0] else None
    gw = conv2d_grad_filter(x, g, kernel_hw=w.shape[2:], **_common(n)) if needs[1] else None
    return gx, gw


def _grad_input_vjp(n, h, needs):
    gy, w = n.inputs
    ggy = make("conv2d", (h, w), **_common(n)) if needs[0] else None
    gw = conv2d_grad_filter(h, gy, kernel_hw=w.shape[2:], **_common(n)) if needs[1] else None
    return ggy, gw


def _grad_filter_vjp(n, h, needs):
    x, gy = n.inputs
    gx = conv2d_grad_input(gy, h, input_hw=x.shape[2:], **_common(n)) if needs[0] else None
    ggy = make("conv2d", (x, h), **_common(n)) if needs[1] else None
    return gx, ggy


register(Op("conv2d", "contraction", _conv_infer, _conv_ref, _conv_vjp, takes_epilogue=True,
            doc="2-d convolution (cross-correlation), NCHW x OIHW, stride/padding/dilation/groups"))
register(Op("conv2d_grad_input", "contraction", _grad_input_infer, _grad_input_ref, _grad_input_vjp,
            doc="transpose of conv2d in its input: d conv2d / dx applied to a cotangent"))
register(Op("conv2d_grad_filter", "contraction", _grad_filter_infer, _grad_filter_ref, _grad_filter_vjp,
            doc="transpose of conv2d in its filter: d conv2d / dw applied to a cotangent"))


# ----------------------------------------------------------------------------- builders


def _attrs(op, x_hw, kernel_hw, stride, padding, dilation, groups, x=None) -> dict:
    stride, dilation = pair(op, "stride", stride, x), pair(op, "dilation", dilation, x)
    _check_positive(op, {"stride": stride, "dilation": dilation, "groups": int(groups)}, *([x] if x is not None else []))
    return {"stride": stride, "dilation": dilation, "groups": int(groups),
            "padding": _norm_padding(op, padding, kernel_hw, stride, dilation, x_hw, x)}


def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-d convolution of x: [N, C, H, W] by w: [O, C/groups, KH, KW] -> [N, O, OH, OW].

    stride, dilation: int or pair. padding: int, (ph, pw), ((top, bottom), (left, right)),
    "valid" or "same". OH = floor((H + top + bottom - dh*(KH-1) - 1) / sh) + 1.
    """
    x, w = ew._coerce(x, w)
    _rank4("conv2d", x, w)
    hw = x.shape[2:] if isinstance(padding, str) else (0, 0)
    if isinstance(padding, str):
        _static("conv2d", x, (2, 3), "spatial sizes")
        _static("conv2d", w, (2, 3), "the kernel size")
    return make("conv2d", (x, w), **_attrs("conv2d", hw, w.shape[2:], stride, padding, dilation, groups, x))


def conv2d_grad_input(gy, w, input_hw, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """The vjp of conv2d in x: [N, C, H, W] for (H, W) = input_hw."""
    gy, w = ew._coerce(gy, w)
    a = _attrs("conv2d_grad_input", tuple(input_hw), w.shape[2:], stride, padding, dilation, groups, gy)
    return make("conv2d_grad_input", (gy, w), input_hw=tuple(int(s) for s in input_hw), **a)


def conv2d_grad_filter(x, gy, kernel_hw, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """The vjp of conv2d in w: [O, C/groups, KH, KW] for (KH, KW) = kernel_hw."""
    x, gy = ew._coerce(x, gy)
    a = _attrs("conv2d_grad_filter", x.shape[2:], tuple(kernel_hw), stride, padding, dilation, groups, x)
    return make("conv2d_grad_filter", (x, gy), kernel_hw=tuple(int(s) for s in kernel_hw), **a)


def conv_transpose2d(x, w, stride=1, padding=0, output_padding=0, dilation=1, groups=1) -> Tensor:
    """The transposed convolution (PyTorch's conv_transpose2d): x: [N, C, H, W] and weights
    w: [C, O/groups, KH, KW] (IOHW) -> [N, O, OH, OW] with
    OH = (H - 1) * sh - top - bottom + dh * (KH - 1) + output_padding_h + 1.

    It is the input-gradient of conv2d with the same weights (conv2d_grad_input), so it
    lowers to the same contraction and its gradients are conv2d and conv2d_grad_filter.
    padding: int or (ph, pw) or ((top, bottom), (left, right)); output_padding adds rows and
    columns at the bottom/right and must be smaller than the stride or the dilation.
    """
    x, w = ew._coerce(x, w)
    op = "conv_transpose2d"
    _rank4(op, x, w)
    _static(op, x, (2, 3), "spatial sizes")
    _static(op, w, (0, 1, 2, 3), "the filter's shape")
    stride, dilation = pair(op, "stride", stride, x), pair(op, "dilation", dilation, x)
    pads = _norm_padding(op, padding, w.shape[2:], stride, dilation, x.shape[2:], x)
    extra = pair(op, "output_padding", output_padding, x)
    for e, s, d in zip(extra, stride, dilation):
        if not 0 <= e < max(s, d):
            raise shape_error(op, f"output_padding {extra} must be >= 0 and smaller than the stride {stride} "
                              f"or the dilation {dilation}", x, w)
    if x.shape[1] != w.shape[0]:
        raise shape_error(op, f"input {x.name or 'x'}: {x.type} has {x.shape[1]} channels but the weights "
                          f"{w.name or 'w'}: {w.type} (IOHW) expect {w.shape[0]} (axis 0)", x, w)
    out_hw = tuple((n - 1) * s - lo - hi + d * (k - 1) + e + 1 for n, s, (lo, hi), d, k, e in
                   zip(x.shape[2:], stride, pads, dilation, w.shape[2:], extra))
    if min(out_hw) < 1:
        raise shape_error(op, f"the output would be {out_hw}: padding {pads} is too large", x, w)
    return conv2d_grad_input(x, w, out_hw, stride, pads, dilation, groups)
