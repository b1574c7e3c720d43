"""matmul: batched, NumPy semantics. The primitive takes operands of rank >= 2;
the builder handles 1-d operands by adding and removing a unit axis."""
from __future__ import annotations

import numpy as np

from ..node import Op, Tensor, make, register, shape_error
from ..types import TensorType, promote
from . import elementwise as ew
from .movement import expand_dims, squeeze, transpose


def _infer(inputs, attrs):
    a, b = inputs
    if a.ndim < 2 or b.ndim < 2:
        raise shape_error("matmul", "the primitive needs operands of rank >= 2", a, b)
    if a.dtype == "bool" or b.dtype == "bool":
        raise shape_error("matmul", "cannot multiply bool tensors", a, b)
    if a.shape[-1] != b.shape[-2]:
        raise shape_error("matmul", f"cannot multiply {a.name or 'a'}: {a.type} by {b.name or 'b'}: {b.type}: "
                          f"inner sizes {a.shape[-1]} and {b.shape[-2]} differ", a, b)
    batch = ew.broadcast_shapes("matmul", _batch_view(a), _batch_view(b))
    return TensorType(promote(a.dtype, b.dtype), batch + (a.shape[-2], b.shape[-1]))


class _batch_view:
    """The batch part of an operand's shape, for broadcast_shapes."""

    def __init__(self, t):
        self.shape, self.ndim, self.type, self.name, self.op, self.where = t.shape[:-2], t.ndim - 2, t.type, t.name, t.op, t.where


def _swap_last(x: Tensor) -> Tensor:
    perm = list(range(x.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return transpose(x, tuple(perm))


def _vjp(n, g, needs):
    a, b = n.inputs
    ga = ew.unbroadcast(matmul(g, _swap_last(b)), a.shape) if needs[0] else None
    gb = ew.unbroadcast(matmul(_swap_last(a), g), b.shape) if needs[1] else None
    return ga, gb


def _ref(ctx, a, b):
    dt = np.dtype(ctx.node.type.dtype)
    return np.matmul(a.astype(dt, copy=False), b.astype(dt, copy=False))


register(Op("matmul", "contraction", _infer, _ref, _vjp, takes_epilogue=True,
            doc="batched matrix product (rank >= 2 operands)"))


def matmul(a, b) -> Tensor:
    a, b = ew._coerce(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise shape_error("matmul", "operands must be at least 1-d (use * for scalars)", a, b)
    squeeze_a = squeeze_b = False
    if a.ndim == 1:
        a, squeeze_a = expand_dims(a, 0), True
    if b.ndim == 1:
        b, squeeze_b = expand_dims(b, -1), True
    y = make("matmul", (a, b))
    if squeeze_a:
        y = squeeze(y, -2)
    if squeeze_b:
        y = squeeze(y, -1)
    return y


def dot(a, b) -> Tensor:
    """numpy.dot for 1-d and 2-d operands (matmul otherwise)."""
    a, b = ew._coerce(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return ew.mul(a, b)
    return matmul(a, b)
