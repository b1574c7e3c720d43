"""Movement simplification: chains of transposes, reshapes and broadcasts collapse,
and broadcasts move out of the way of the arithmetic (an elementwise op
broadcasts its operands itself; a unary op runs on the small tensor). All exact.
"""
from __future__ import annotations

from nngraph.node import OPS
from nngraph.types import Dim

from .patterns import node


def transpose_of_transpose(n):
    """transpose(transpose(x, p), q) -> transpose(x, p o q), or x when that is the identity."""
    if n.op == "transpose":
        perm = tuple(n.attrs["perm"])
        if perm == tuple(range(len(perm))):
            return n.inputs[0]
        if n.inputs[0].op == "transpose":
            inner = n.inputs[0].attrs["perm"]
            p = tuple(inner[k] for k in perm)
            x = n.inputs[0].inputs[0]
            return x if p == tuple(range(len(p))) else node("transpose", (x,), n, perm=p)
    return None


def reshape_chain(n):
    """reshape(reshape x) -> reshape x; a reshape to the same shape -> x."""
    if n.op == "reshape":
        x = n.inputs[0]
        if tuple(x.shape) == tuple(n.shape):
            return x
        if x.op == "reshape":
            y = x.inputs[0]
            return y if tuple(y.shape) == tuple(n.shape) else node("reshape", (y,), n, shape=tuple(n.shape))
    return None


def broadcast_chain(n):
    """broadcast_to(broadcast_to x) -> broadcast_to x; a broadcast to the same shape -> x."""
    if n.op == "broadcast_to":
        x = n.inputs[0]
        if tuple(x.shape) == tuple(n.shape):
            return x
        if x.op == "broadcast_to":
            return node("broadcast_to", (x.inputs[0],), n, shape=tuple(n.shape))
    return None


def _all_ones(shape) -> bool:
    return all(s == 1 for s in shape)


def reshaped_scalar(n):
    """broadcast_to(reshape x) and reshape(broadcast_to x) for a single-element x ->
    broadcast_to x: every element is x's one value, whatever the shapes in between."""
    if n.op in ("broadcast_to", "reshape") and n.inputs[0].op in ("reshape", "broadcast_to") \
            and n.inputs[0].op != n.op:
        x = n.inputs[0].inputs[0]
        if _all_ones(x.shape) and x.ndim <= n.ndim and not any(isinstance(s, Dim) for s in x.shape):
            return node("broadcast_to", (x,), n, shape=tuple(n.shape))
    return None


def unary_through_broadcast(n):
    """f(broadcast_to(x)) -> broadcast_to(f(x)) for an elementwise f of one operand:
    compute on the small tensor, broadcast the result."""
    if len(n.inputs) == 1 and OPS[n.op].kind == "elementwise" and n.inputs[0].op == "broadcast_to":
        b = n.inputs[0]
        fx = node(n.op, (b.inputs[0],), n, **n.attrs)
        return node("broadcast_to", (fx,), n, shape=tuple(n.shape))
    return None


def implicit_broadcast(n):
    """An elementwise op of several operands broadcasts them itself: an operand
    broadcast_to(x) -> x whenever the result keeps its type."""
    if len(n.inputs) < 2 or OPS[n.op].kind != "elementwise":
        return None
    ins = list(n.inputs)
    changed = False
    for k, a in enumerate(ins):
        if a.op != "broadcast_to":
            continue
        trial = ins[:k] + [a.inputs[0]] + ins[k + 1:]
        try:
            t = OPS[n.op].infer(tuple(trial), n.attrs)
        except Exception:  # noqa: BLE001 - the operands no longer broadcast
            continue
        if t == n.type:
            ins, changed = trial, True
    return node(n.op, ins, n, **n.attrs) if changed else None


RULES = [
    transpose_of_transpose, reshape_chain, broadcast_chain, reshaped_scalar,
    unary_through_broadcast, implicit_broadcast,
]
