"""Reductions over a set of axes: sum, max, min (differentiable) and argmax."""
from __future__ import annotations

import builtins

import numpy as np

from ..node import Op, Tensor, make, register, shape_error
from ..semantics import reduce_identity
from ..types import TensorType, is_float, np_dtype
from . import elementwise as ew


def normalize_axes(op: str, x: Tensor, axis) -> tuple:
    if axis is None:
        return tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -x.ndim <= a < builtins.max(x.ndim, 1) or (x.ndim == 0 and a not in (0, -1)):
            raise shape_error(op, f"axis {a} is out of range for a {x.ndim}-d tensor", x)
        out.append(a % builtins.max(x.ndim, 1) if x.ndim else 0)
    if len(set(out)) != len(out):
        raise shape_error(op, f"repeated axis in {axes}", x)
    return tuple(sorted(out)) if x.ndim else ()


def reduced_shape(shape, axes, keepdims) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _infer(name, float_only=False):
    def infer(inputs, attrs):
        (x,) = inputs
        if x.dtype == "bool" and name != "argmax":
            raise shape_error(name, "cannot reduce bool; cast it first", x)
        for a in attrs["axes"]:
            if not 0 <= a < x.ndim and x.ndim:
                raise shape_error(name, f"axis {a} is out of range for a {x.ndim}-d tensor", x)
        if name in ("max", "min", "argmax") and not attrs.get("empty_identity"):
            for a in attrs["axes"]:
                if x.shape[a] == 0:
                    raise shape_error(name, f"cannot reduce over axis {a} of size 0 (no identity)", x)
        dt = "int64" if name == "argmax" else x.dtype
        return TensorType(dt, reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]))
    return infer


def _expand_back(g: Tensor, x: Tensor, axes, keepdims) -> Tensor:
    """Broadcast a reduced cotangent back over the reduced axes of x."""
    from .movement import broadcast_to, reshape
    if not keepdims:
        g = reshape(g, reduced_shape(x.shape, axes, True))
    return broadcast_to(g, x.shape)


def _sum_vjp(n, g, needs):
    return (_expand_back(g, n.inputs[0], n.attrs["axes"], n.attrs["keepdims"]),)


def _extremum_vjp(n, g, needs):
    """The gradient is shared equally among the positions that attain the extremum."""
    x = n.inputs[0]
    axes, keep = n.attrs["axes"], n.attrs["keepdims"]
    y = _expand_back(n, x, axes, keep)
    mask = ew.cast(ew.equal(x, y), x.dtype)
    count = sum(mask, axes, keepdims=True)
    return (ew.div(ew.mul(_expand_back(g, x, axes, keep), mask), count),)


def _ref(fn):
    def reference(ctx, a):
        axes, keep = ctx.attrs["axes"], ctx.attrs["keepdims"]
        if ctx.attrs.get("empty_identity"):
            kind = "max" if fn is np.max else "min"
            out = fn(a, axis=axes, keepdims=keep, initial=reduce_identity(kind, ctx.node.dtype))
        else:
            out = fn(a, axis=axes, keepdims=keep)
        return np.asarray(out).astype(np_dtype(ctx.node.dtype), copy=False)
    return reference


def _argmax_ref(ctx, a):
    (ax,) = ctx.attrs["axes"]
    return np.argmax(a, axis=ax, keepdims=ctx.attrs["keepdims"]).astype(np.int64)


def _sum_ref(a, axis, keepdims):
    """float32 sums accumulate in float64: NumPy sums pairwise only along the
    contiguous axis, and over axis 0 of a C-ordered array it keeps one running
    float32 total per column (1.5% off over 2e6 rows)."""
    acc = np.float64 if a.dtype == np.float32 else a.dtype
    return np.sum(a, axis=axis, keepdims=keepdims, dtype=acc)


register(Op("sum", "reduction", _infer("sum"), _ref(_sum_ref), _sum_vjp, doc="sum over axes"))
register(Op("max", "reduction", _infer("max"), _ref(np.max), _extremum_vjp, doc="max over axes"))
register(Op("min", "reduction", _infer("min"), _ref(np.min), _extremum_vjp, doc="min over axes"))
register(Op("argmax", "reduction", _infer("argmax"), _argmax_ref, None, nondiff=True,
            doc="index of the first max along one axis (int64)"))


def _stable_log_sum_exp(s):
    """log(sum(exp(z))) written by hand becomes max(z) + log(sum(exp(z - max(z)))) as
    it is built, so its gradient (softmax(z)) is the stable form's too: a rewrite of the
    value alone left exp(z) / sum(exp(z)) = inf / inf in the gradient. An exponent that
    is already shifted by a stop_gradient (logsumexp, log_softmax) is left as it is."""
    if s.op != "sum" or s.inputs[0].op != "exp" or not is_float(s.dtype):
        return None
    z = s.inputs[0].inputs[0]
    if z.op == "sub" and z.inputs[1].op == "stop_gradient":
        return None
    from .movement import reshape
    axes, keep = s.attrs["axes"], s.attrs["keepdims"]
    m = ew.stop_gradient(max(z, axes, keepdims=True, empty_identity=True))
    inner = make("log", (sum(ew.exp(ew.sub(z, m)), axes, keepdims=keep),), canonical=False)
    return ew.add(m if keep else reshape(m, tuple(inner.shape)), inner)


ew.LOG_REWRITES.append(_stable_log_sum_exp)


def sum(x, axis=None, keepdims=False) -> Tensor:
    (x,) = ew._coerce(x)
    if x.dtype == "bool":
        x = ew.cast(x, "int32")
    return make("sum", (x,), axes=normalize_axes("sum", x, axis), keepdims=bool(keepdims))


def max(x, axis=None, keepdims=False, empty_identity=False) -> Tensor:
    """The largest value over `axis`. An empty axis has no max (as in NumPy): a static
    one is a ShapeError, a dynamic one of size 0 an InputError at the call; with
    `empty_identity=True` it gives the identity instead (-inf, the integer minimum; as
    np.max(initial=-inf) and ONNX's ReduceMax since opset 18), which the stable
    log-sum-exp forms use as their shift (log of an empty sum is -inf)."""
    return _extremum("max", x, axis, keepdims, empty_identity)


def min(x, axis=None, keepdims=False, empty_identity=False) -> Tensor:
    """The smallest value over `axis`; an empty axis as max says (identity: +inf)."""
    return _extremum("min", x, axis, keepdims, empty_identity)


def _extremum(name, x, axis, keepdims, empty_identity):
    (x,) = ew._coerce(x)
    extra = {"empty_identity": True} if empty_identity else {}
    return make(name, (x,), axes=normalize_axes(name, x, axis), keepdims=bool(keepdims), **extra)


def argmax(x, axis=-1, keepdims=False) -> Tensor:
    """Index of the largest value along one axis (the first one on ties)."""
    (x,) = ew._coerce(x)
    if axis is None:
        from .movement import reshape
        x, axis = reshape(x, (-1,)), 0
    axes = normalize_axes("argmax", x, axis)
    if len(axes) != 1:
        raise shape_error("argmax", "takes exactly one axis", x)
    return make("argmax", (x,), axes=axes, keepdims=bool(keepdims))


def mean(x, axis=None, keepdims=False) -> Tensor:
    """sum / count, with the count a constant or a symbolic-size scalar."""
    (x,) = ew._coerce(x)
    if not is_float(x.dtype):
        x = ew.cast(x, "float32")
    axes = normalize_axes("mean", x, axis)
    count = ew.numel([x.shape[a] for a in axes], x.dtype)
    return ew.div(sum(x, axes, keepdims), count)
