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


def _padded_piece(n, like):
    """(axis, start, x) when n is x zero-padded along one static axis to like's type; else None."""
    if n.op != "pad" or n.type != like.type or float(n.attrs["value"]) != 0.0:
        return None
    axes = [k for k, p in enumerate(n.attrs["pads"]) if tuple(p) != (0, 0, 0)]
    if len(axes) != 1 or n.attrs["pads"][axes[0]][2] != 0 or isinstance(n.shape[axes[0]], Dim):
        return None
    return axes[0], n.attrs["pads"][axes[0]][0], n.inputs[0]


def _summands(n, out: list) -> list:
    """The operands of a tree of adds of n's type, left to right."""
    for i in n.inputs:
        if i.op == "add" and i.type == n.type:
            _summands(i, out)
        else:
            out.append(i)
    return out


def sum_of_pads(n):
    """A sum of zero pads along one axis of pieces that sit side by side,
    pad(a, (0, hi)) + pad(b, (lo, 0)) + ..., -> pad(concatenate(a, b, ...)) (no pad when
    they cover the axis): the gradient of the gates sliced out of one product (an LSTM's
    dz from di, df, dg, do) becomes one pass that writes each piece once instead of
    every piece masked at every element. Pieces that overlap or leave gaps stay sums."""
    if n.op != "add":
        return None
    pieces = [_padded_piece(t, n) for t in _summands(n, [])]
    if len(pieces) < 2 or any(p is None for p in pieces) or len({p[0] for p in pieces}) != 1:
        return None
    axis = pieces[0][0]
    pieces.sort(key=lambda p: p[1])
    ins, at = [], pieces[0][1]
    for _, start, x in pieces:
        if start != at:
            return None
        at += x.shape[axis]
        ins += list(x.inputs) if x.op == "concatenate" and x.attrs["axis"] == axis else [x]
    joined = node("concatenate", ins, n, axis=axis)
    if tuple(joined.shape) == tuple(n.shape):
        return joined
    pads = tuple((pieces[0][1], n.shape[axis] - at, 0) if k == axis else (0, 0, 0) for k in range(n.ndim))
    return node("pad", (joined,), n, pads=pads, value=0.0)


RULES = [
    transpose_of_transpose, reshape_chain, broadcast_chain, reshaped_scalar,
    unary_through_broadcast, implicit_broadcast, sum_of_pads,
]
