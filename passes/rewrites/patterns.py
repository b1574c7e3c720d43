"""Helpers the rewrite rules share: reading constants, building replacement nodes.

Replacement nodes are made with `canonical=False` (a rule says exactly what it
builds) and at the location of the node they replace, so dumps and errors keep
pointing at the user's line.
"""
from __future__ import annotations

import numpy as np

from nngraph.node import ConstValue, Tensor, make
from nngraph.types import is_float, np_dtype


def node(op: str, inputs, at: Tensor, **attrs) -> Tensor:
    """A new node placed at `at`'s source location."""
    return make(op, tuple(inputs), where=at.where, canonical=False, **attrs)


def const(value, dtype: str, at: Tensor) -> Tensor:
    """A literal of `dtype` (a scalar or an array), placed at `at`'s source location."""
    arr = np.asarray(value).astype(np_dtype(dtype))
    return make("constant", (), where=at.where, canonical=False, value=ConstValue(arr))


def uniform_value(n: Tensor):
    """The one value every element of `n` holds, when `n` is a constant (possibly
    reshaped or broadcast) whose elements are all equal; else None."""
    while n.op in ("broadcast_to", "reshape"):
        n = n.inputs[0]
    if n.op != "constant":
        return None
    a = n.attrs["value"].array
    if a.size == 0:
        return None
    first = a.reshape(-1)[0]
    if a.dtype.kind == "f" and np.isnan(first):
        return None
    if not np.all(a == first):
        return None
    return first.item()


def is_value(n: Tensor, v) -> bool:
    """`n` is a constant whose every element equals `v` (bools never count as numbers)."""
    u = uniform_value(n)
    return u is not None and not isinstance(u, bool) and n.dtype != "bool" and u == v


def fit(x: Tensor, like: Tensor) -> Tensor | None:
    """`x` as a replacement for `like`: itself when the types agree, broadcast when
    only the shape is smaller, None when the dtype differs or it cannot broadcast."""
    if x.type == like.type:
        return x
    if x.dtype != like.dtype or x.ndim > like.ndim:
        return None
    for s, t in zip(x.shape[::-1], like.shape[::-1]):
        if s != 1 and s != t:
            return None
    return node("broadcast_to", (x,), like, shape=tuple(like.shape))


def strip(n: Tensor, ops=("broadcast_to", "reshape")) -> Tensor:
    """`n` with any chain of the given (value-preserving) ops peeled off."""
    while n.op in ops:
        n = n.inputs[0]
    return n


# ops that map finite inputs to finite outputs (no overflow, no pole, no domain error)
_FINITE_PRESERVING = frozenset({"neg", "abs", "sign", "step", "relu", "sigmoid", "tanh", "sin", "cos",
                                "broadcast_to", "reshape", "transpose", "slice", "where", "maximum",
                                "minimum", "stop_gradient"})
_ALWAYS_FINITE = frozenset({"iota", "numel", "uniform"})


def known_finite(n: Tensor, depth: int = 8) -> bool:
    """True when `n` can never hold inf or NaN: integer and bool values, finite
    constants, casts from integers, index sources, and ops that keep finite
    inputs finite applied to such values. Anything else (a placeholder, a
    parameter, an exp, a division) may be inf or NaN."""
    if not is_float(n.dtype):
        return True
    if n.op == "constant":
        return bool(np.all(np.isfinite(n.attrs["value"].array)))
    if n.op in _ALWAYS_FINITE:
        return True
    if n.op == "cast":
        return not is_float(n.inputs[0].dtype) or known_finite(n.inputs[0], depth - 1)
    if n.op in _FINITE_PRESERVING and depth > 0:
        return all(known_finite(i, depth - 1) for i in n.inputs)
    return False


def zeros(like: Tensor) -> Tensor:
    """Zeros of `like`'s type: a scalar constant, broadcast when `like` is not 0-d."""
    z = const(0, like.dtype, like)
    return z if like.ndim == 0 else node("broadcast_to", (z,), like, shape=tuple(like.shape))
