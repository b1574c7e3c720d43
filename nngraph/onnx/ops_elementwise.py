"""ONNX elementwise operators: unary maths, activations, arithmetic, comparisons, logic.

Each is composed from nngraph's primitives. Where ONNX and NumPy differ (integer
Div truncates, Pow keeps the base's type, Max/Min/Sum/Mean take any number of
operands) the converter says so in one line.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import functional as F
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..types import INT_DTYPES, is_float
from .registry import converter

# ----------------------------------------------------------------------------- unary

_UNARY = {
    "Abs": ew.abs, "Neg": ew.neg, "Exp": ew.exp, "Log": ew.log, "Sqrt": ew.sqrt, "Sin": ew.sin,
    "Cos": ew.cos, "Tanh": ew.tanh, "Sigmoid": ew.sigmoid, "Relu": ew.relu, "Sign": ew.sign,
    "Softplus": ew.softplus, "Not": ew.logical_not, "BitwiseNot": ew.bitwise_not,
    "Reciprocal": lambda x: ew.div(1.0, x),
    "Softsign": lambda x: ew.div(x, ew.add(ew.abs(x), 1.0)),
    "Tan": lambda x: ew.div(ew.sin(x), ew.cos(x)),
    "Sinh": lambda x: ew.mul(ew.sub(ew.exp(x), ew.exp(ew.neg(x))), 0.5),
    "Cosh": lambda x: ew.mul(ew.add(ew.exp(x), ew.exp(ew.neg(x))), 0.5),
    "Mish": lambda x: ew.mul(x, ew.tanh(ew.softplus(x))),
    "HardSwish": lambda x: ew.mul(x, F.clip(ew.add(ew.mul(x, 1.0 / 6.0), 0.5), 0.0, 1.0)),
    # the inverse hyperbolics through log1p, so that small arguments keep their precision
    "Asinh": lambda x: ew.mul(ew.sign(x), ew.log1p(ew.add(ew.abs(x), ew.div(ew.mul(x, x), ew.add(
        ew.sqrt(ew.add(ew.mul(x, x), 1.0)), 1.0))))),
    "Acosh": lambda x: ew.log1p(ew.add(ew.sub(x, 1.0), ew.sqrt(ew.mul(ew.sub(x, 1.0), ew.add(x, 1.0))))),
    "Atanh": lambda x: ew.mul(ew.sub(ew.log1p(x), ew.log1p(ew.neg(x))), 0.5),
}
_UNARY_FIRST = {"Sin": 7, "Cos": 7, "Tan": 7, "Sign": 9, "Sinh": 9, "Cosh": 9, "Mish": 18, "HardSwish": 14,
                "Asinh": 9, "Acosh": 9, "Atanh": 9,
                "Not": 1, "Softplus": 1, "Softsign": 1, "BitwiseNot": 18}


def _unary_converter(fn, ctx):
    return fn(ctx.t(0))


for _op, _fn in _UNARY.items():
    converter(_op, _UNARY_FIRST.get(_op, 6))(functools.partial(_unary_converter, _fn))


@converter("LeakyRelu", 6, attrs=("alpha",))
def _leaky_relu(ctx):
    return F.leaky_relu(ctx.t(0), ctx.attr("alpha", 0.01))


@converter("Elu", 6, attrs=("alpha",))
def _elu(ctx):
    return F.elu(ctx.t(0), ctx.attr("alpha", 1.0))


@converter("Selu", 6, attrs=("alpha", "gamma"))
def _selu(ctx):
    x = ctx.t(0)
    alpha, gamma = ctx.attr("alpha", 1.67326319217681884765625), ctx.attr("gamma", 1.05070102214813232421875)
    neg = ew.mul(ew.expm1(ew.minimum(x, 0.0)), alpha)
    return ew.mul(ew.where(ew.greater(x, 0.0), x, neg), gamma)


@converter("Celu", 12, attrs=("alpha",))
def _celu(ctx):
    x, alpha = ctx.t(0), ctx.attr("alpha", 1.0)
    return ew.add(ew.maximum(x, 0.0), ew.minimum(ew.mul(ew.expm1(ew.div(ew.minimum(x, 0.0), alpha)), alpha), 0.0))


@converter("ThresholdedRelu", 10, attrs=("alpha",))
def _thresholded_relu(ctx):
    x = ctx.t(0)
    return ew.where(ew.greater(x, ctx.attr("alpha", 1.0)), x, ew.zeros_like(x))


@converter("HardSigmoid", 6, attrs=("alpha", "beta"))
def _hard_sigmoid(ctx):
    x = ctx.t(0)
    return F.clip(ew.add(ew.mul(x, ctx.attr("alpha", 0.2)), ctx.attr("beta", 0.5)), 0.0, 1.0)


@converter("PRelu", 7)
def _prelu(ctx):
    x, slope = ctx.t(0), ctx.t(1)
    return ew.where(ew.less(x, 0.0), ew.mul(x, slope), x)


@converter("Shrink", 9, attrs=("bias", "lambd"))
def _shrink(ctx):
    """x + bias below -lambd, x - bias above lambd, 0 between."""
    x = ctx.t(0)
    bias, lambd = float(ctx.attr("bias", 0.0)), float(ctx.attr("lambd", 0.5))
    zero = ew.zeros_like(x)
    return ew.where(ew.less(x, -lambd), ew.add(x, bias), ew.where(ew.greater(x, lambd), ew.sub(x, bias), zero))


@converter("PRelu", 6, 6)
def _prelu_6(ctx):
    """Opset 6 gives one slope per channel (axis 1) as a 1-d [C] tensor, where 7+
    broadcasts it as NumPy does (from the last axis)."""
    x, slope = ctx.t(0), ctx.t(1)
    if slope.ndim == 1 and x.ndim > 2 and slope.shape[0] == x.shape[1] != 1:
        slope = mv.reshape(slope, (slope.shape[0],) + (1,) * (x.ndim - 2))
    return ew.where(ew.less(x, 0.0), ew.mul(x, slope), x)


# ----------------------------------------------------------------------------- binary


def _same_type(a, b):
    """ONNX binary ops take operands of one type; a scalar literal may have come in wider."""
    if a.dtype != b.dtype:
        b = ew.cast(b, a.dtype)
    return a, b


def _div(a, b):
    """ONNX integer Div truncates toward zero (C's rule), exactly: ng.trunc_div, never a
    float detour (int64 beyond 2**53 would round); float Div is true division."""
    return ew.trunc_div(a, b) if a.dtype in INT_DTYPES else ew.div(a, b)


_BINARY = {
    "Add": ew.add, "Sub": ew.sub, "Mul": ew.mul, "Div": _div,
    "Equal": ew.equal, "Less": ew.less, "LessOrEqual": ew.less_equal, "Greater": ew.greater,
    "GreaterOrEqual": ew.greater_equal, "And": ew.logical_and, "Or": ew.logical_or, "Xor": ew.not_equal,
    "BitwiseAnd": ew.bitwise_and, "BitwiseOr": ew.bitwise_or, "BitwiseXor": ew.bitwise_xor,
}
_BINARY_FIRST = {"LessOrEqual": 12, "GreaterOrEqual": 12, "BitwiseAnd": 18, "BitwiseOr": 18, "BitwiseXor": 18}


def _binary_converter(fn, ctx):
    return fn(*_same_type(ctx.t(0), ctx.t(1)))


def _legacy_binary_converter(fn, ctx):
    """Opsets before 7: no implicit broadcasting; `broadcast=1` lets B align with A
    from `axis` on (A's trailing axes by default)."""
    return fn(*_same_type(*_legacy_operands(ctx)))


for _op, _fn in _BINARY.items():
    converter(_op, _BINARY_FIRST.get(_op, 7))(functools.partial(_binary_converter, _fn))
    if _op in ("Add", "Sub", "Mul", "Div", "Equal", "Less", "Greater", "And", "Or", "Xor"):
        converter(_op, 1, 6, attrs=("broadcast", "axis"))(functools.partial(_legacy_binary_converter, _fn))


def _legacy_operands(ctx):
    """(A, B) with B aligned to A from `axis` on when broadcast=1 (opsets before 7)."""
    a, b = ctx.t(0), ctx.t(1)
    if ctx.attr("broadcast", 0) and ctx.attr("axis") is not None and b.ndim:
        axis = int(ctx.attr("axis")) % a.ndim
        b = mv.reshape(b, tuple(b.shape) + (1,) * (a.ndim - axis - b.ndim))
    return a, b


@converter("Pow", 1, 6, attrs=("broadcast", "axis"))
def _legacy_pow(ctx):
    return _power(*_legacy_operands(ctx))


@converter("Pow", 7)
def _pow(ctx):
    return _power(ctx.t(0), ctx.t(1))


def _power(x, y):
    """The result has the base's type whatever the exponent's."""
    if is_float(x.dtype):
        return ew.pow(x, ew.cast(y, x.dtype) if y.dtype != x.dtype else y)
    return ew.cast(ew.pow(ew.cast(x, "float64"), ew.cast(y, "float64")), x.dtype)


def _variadic(fn, ctx):
    xs = [ctx.t(i) for i in range(len(ctx.values)) if ctx.has(i)]
    return functools.reduce(fn, xs)


converter("Sum", 6)(functools.partial(_variadic, ew.add))
converter("Max", 6)(functools.partial(_variadic, ew.maximum))
converter("Min", 6)(functools.partial(_variadic, ew.minimum))


@converter("Mean", 6)
def _mean(ctx):
    n = sum(1 for i in range(len(ctx.values)) if ctx.has(i))
    return ew.div(_variadic(ew.add, ctx), float(n))


@converter("Where", 9)
def _where(ctx):
    return ew.where(ctx.t(0), *_same_type(ctx.t(1), ctx.t(2)))


@converter("Clip", 6, 10, attrs=("min", "max"))
def _clip_attrs(ctx):
    y = ctx.t(0)
    if ctx.attr("min") is not None:
        y = ew.maximum(y, np.asarray(ctx.attr("min"), y.dtype))
    if ctx.attr("max") is not None:
        y = ew.minimum(y, np.asarray(ctx.attr("max"), y.dtype))
    return y


@converter("Clip", 11)
def _clip_inputs(ctx):
    y = ctx.t(0)
    if ctx.has(1):
        y = ew.maximum(y, ctx.t(1))
    if ctx.has(2):
        y = ew.minimum(y, ctx.t(2))
    return y


@converter("Cast", 6, attrs=("to", "saturate", "round_mode"))
def _cast(ctx):
    """`saturate` and `round_mode` only concern float8 targets, which are refused by type."""
    from .dtypes import to_nngraph
    return ew.cast(ctx.t(0), to_nngraph(ctx.attr("to"), "attribute 'to'", ctx.error))
