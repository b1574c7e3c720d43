"""ONNX Atan, Asin and Acos, composed from nngraph's primitives.

nngraph has no inverse trigonometric primitive. atan is Cephes' double-precision atan:
the argument is reduced to |x| <= 0.66 (x > tan(3pi/8): pi/2 + atan(-1/x); x > 0.66:
pi/4 + atan((x-1)/(x+1))), where x + x^3 P(x^2)/Q(x^2) is accurate to about 1e-16
relative; in float32 arithmetic the result is within a few ulps. The branches are
selected with `where`, so every branch is computed (a branch's own infinities or
NaNs at an input it does not serve never reach the result). Then
asin x = atan(x / sqrt((1 - x)(1 + x))) and acos x = 2 atan(sqrt((1 - x) / (1 + x))),
forms without the cancellation of pi/2 - asin x near 1 (|x| > 1 gives NaN, as NumPy).
They differentiate as composites: the derivative of the approximation.
"""
from __future__ import annotations

import math

from ..ops import elementwise as ew
from .ops_erf import _float_input, _horner
from .registry import converter

_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
      -1.228866684490136173410e2, -6.485021904942025371773e1)
_Q = (1.0, 2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
      4.853903996359136964868e2, 1.945506571482613964425e2)
_TAN_3PI_8 = 2.41421356237309504880
_MOREBITS = 6.123233995736765886130e-17  # pi/2 - its double value


def _atan_small(x):
    """atan on |x| <= 0.66."""
    z = ew.mul(x, x)
    return ew.add(x, ew.mul(x, ew.div(ew.mul(z, _horner(z, _P)), _horner(z, _Q))))


def atan(x):
    """The arctangent of a float tensor (see the module docstring for its accuracy)."""
    a = ew.abs(x)
    big = ew.greater(a, _TAN_3PI_8)
    mid = ew.greater(a, 0.66)
    one = ew.ones_like(a)
    safe_a = ew.where(big, a, one)  # -1/a only where a is large; (a-1)/(a+1) is finite for a >= 0
    reduced = ew.where(big, ew.neg(ew.div(one, safe_a)),
                       ew.where(mid, ew.div(ew.sub(a, 1.0), ew.add(a, 1.0)), a))
    offset = ew.where(big, ew.mul(one, math.pi / 2 + _MOREBITS),
                      ew.where(mid, ew.mul(one, math.pi / 4 + 0.5 * _MOREBITS), ew.zeros_like(a)))
    return ew.mul(ew.sign(x), ew.add(offset, _atan_small(reduced)))


@converter("Atan", 7)
def _atan(ctx):
    return atan(_float_input(ctx))


@converter("Asin", 7)
def _asin(ctx):
    x = _float_input(ctx)
    return atan(ew.div(x, ew.sqrt(ew.mul(ew.sub(1.0, x), ew.add(x, 1.0)))))


@converter("Acos", 7)
def _acos(ctx):
    x = _float_input(ctx)
    return ew.mul(atan(ew.sqrt(ew.div(ew.sub(1.0, x), ew.add(x, 1.0)))), 2.0)
