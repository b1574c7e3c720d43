"""ONNX Erf and Gelu, composed from nngraph's primitives.

nngraph has no erf primitive; erf(x) is the rational approximation x * P(x^2) / Q(x^2)
on x clamped to [-4, 4] (Eigen's and XLA's float32 erf: beyond 4, erf is +/-1 in float32).
Its relative error is below 5e-7 in float32 and 7e-8 in float64 (the approximation's
own limit); its derivative is within 1e-6 of erf's, as a composite differentiates. PyTorch exports nn.GELU() as
x * 0.5 * (1 + Erf(x / sqrt 2)) at opsets below 20, so transformer models need it.
"""
from __future__ import annotations

import math

from ..ops import elementwise as ew
from ..types import is_float
from .registry import converter

_NUMERATOR = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
              -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)  # x^12 ... x^0 of P
_DENOMINATOR = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
                -1.42647390514189e-02)  # x^8 ... x^0 of Q


def _horner(x2, coefficients):
    acc = ew.mul(ew.ones_like(x2), coefficients[0])
    for c in coefficients[1:]:
        acc = ew.add(ew.mul(acc, x2), c)
    return acc


def erf(x):
    """The error function of a float tensor (see the module docstring for its accuracy)."""
    x = ew.minimum(ew.maximum(x, -4.0), 4.0)
    x2 = ew.mul(x, x)
    return ew.div(ew.mul(x, _horner(x2, _NUMERATOR)), _horner(x2, _DENOMINATOR))


def _float_input(ctx):
    x = ctx.t(0)
    if not is_float(x.dtype):
        raise ctx.error(f"input {ctx.node.input[0]!r} must be float, got {x.type}")
    return x


@converter("Erf", 9)
def _erf(ctx):
    return erf(_float_input(ctx))


@converter("Gelu", 20, attrs=("approximate",))
def _gelu(ctx):
    """approximate="none": x/2 (1 + erf(x/sqrt 2)); "tanh": x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = _float_input(ctx)
    if ctx.refuse_unless("approximate", ("none", "tanh"), "none") == "tanh":
        inner = ew.mul(ew.add(x, ew.mul(ew.mul(x, ew.mul(x, x)), 0.044715)), math.sqrt(2.0 / math.pi))
        return ew.mul(ew.mul(x, 0.5), ew.add(ew.tanh(inner), 1.0))
    return ew.mul(ew.mul(x, 0.5), ew.add(erf(ew.mul(x, 1.0 / math.sqrt(2.0))), 1.0))
