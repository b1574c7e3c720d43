"""Gradient clipping as Keras's optimiser arguments define it:
- clipvalue=v: every gradient element is clipped to [-v, v];
- clipnorm=c: each weight's gradient is rescaled so that its L2 norm is at most c
  (g * c / max(||g||, c); per weight, as Keras does, not over all weights).
Both are graph ops, so clipping happens inside the compiled training step."""
from __future__ import annotations

from .. import functional as F
from ..ops import elementwise as ew
from ..ops import reduce as rd


def check(clipnorm, clipvalue) -> tuple:
    """(clipnorm, clipvalue) as floats or None; each must be > 0."""
    out = []
    for name, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue)):
        if v is not None and not float(v) > 0.0:
            raise ValueError(f"{name} must be > 0, got {v}")
        out.append(None if v is None else float(v))
    return tuple(out)


def clip(g, clipnorm=None, clipvalue=None):
    """The gradient `g` clipped by value, then by norm."""
    if clipvalue is not None:
        g = F.clip(g, -clipvalue, clipvalue)
    if clipnorm is not None:
        norm = ew.sqrt(rd.sum(g * g))
        g = g * (clipnorm / ew.maximum(norm, clipnorm))
    return g
