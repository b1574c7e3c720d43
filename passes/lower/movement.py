"""Movement ops as index maps: each value rule (`@inline`) reads its input at a
transformed index, so a movement never moves data by itself: reshape by floordiv/mod
(axes paired where their products agree), transpose by permutation, broadcast by
index 0, slice by stride and offset, pad and concatenate by masks and `where`.
A materialised movement value is stored by the map rule of passes/lower/elementwise.py.
"""
from __future__ import annotations

from nngraph.types import Dim, size_product

from .body import Body, broadcast_index, flat_index, py_scalar
from .registry import inline


def _divides(a, b) -> bool:
    """Does the symbolic product a divide b?"""
    (ca, sa), (cb, sb) = a, b
    return ca != 0 and cb % ca == 0 and not (sa - sb)


def reshape_groups(in_shape, out_shape):
    """Pair runs of axes whose products agree (size-1 axes dropped), so a reshape
    that splits or merges axes becomes small floordiv/mod maps; one big group when
    no finer pairing exists."""
    ins = [k for k, s in enumerate(in_shape) if s != 1]
    outs = [k for k, s in enumerate(out_shape) if s != 1]
    groups, i, j = [], 0, 0
    while i < len(ins) or j < len(outs):
        if i >= len(ins) or j >= len(outs):
            return [(ins, outs)]
        gi, go = [ins[i]], [outs[j]]
        i, j = i + 1, j + 1
        while True:
            pi = size_product([in_shape[k] for k in gi])
            po = size_product([out_shape[k] for k in go])
            if pi == po:
                break
            if _divides(po, pi) and j < len(outs):
                go.append(outs[j])
                j += 1
            elif _divides(pi, po) and i < len(ins):
                gi.append(ins[i])
                i += 1
            else:
                return [(ins, outs)]
        groups.append((gi, go))
    return groups


def reshape_index(body: Body, in_shape, out_shape, idx) -> tuple:
    res = [body.iconst(0)] * len(in_shape)
    for gi, go in reshape_groups(in_shape, out_shape):
        if len(gi) == 1 and len(go) == 1:
            res[gi[0]] = idx[go[0]]
            continue
        flat = flat_index(body, [out_shape[k] for k in go], [idx[k] for k in go])
        stride = body.iconst(1)
        for n, k in enumerate(reversed(gi)):
            q = body.ifloordiv(flat, stride)
            res[k] = q if n == len(gi) - 1 else body.imod(q, body.isize(in_shape[k]))
            stride = body.imul(stride, body.isize(in_shape[k]))
    return tuple(res)


def _read_through(index_map):
    """The value rule of a movement that reads its input at index_map(body, input shape,
    output shape, index)."""
    def rule(em, n, idx, mask):
        x = n.inputs[0]
        return em.value(x, index_map(em.body, x.shape, n.shape, idx), mask)
    return rule


inline("reshape")(_read_through(reshape_index))
inline("broadcast_to")(_read_through(broadcast_index))


@inline("transpose")
def _transpose(em, n, idx, mask):
    perm = n.attrs["perm"]
    src = [None] * len(perm)
    for k, p in enumerate(perm):
        src[p] = idx[k]
    return em.value(n.inputs[0], tuple(src), mask)


@inline("slice")
def _slice(em, n, idx, mask):
    b = em.body
    src = tuple(b.iadd(b.iconst(start), b.imul(i, b.iconst(step))) if not isinstance(start, Dim) else i
                for (start, stop, step), i in zip(n.attrs["slices"], idx))
    return em.value(n.inputs[0], src, mask)


@inline("pad")
def _pad(em, n, idx, mask):
    b, x = em.body, n.inputs[0]
    local, src = None, []
    for (lo, hi, it), s, i in zip(n.attrs["pads"], x.shape, idx):
        if (lo, hi, it) == (0, 0, 0):
            src.append(i)
            continue
        p = b.isub(i, b.iconst(lo))
        span = (s - 1) * (it + 1) + 1 if s else 0
        ok = b.land(b.emit("greater_equal", (p, b.iconst(0)), "bool"),
                    b.emit("less", (p, b.iconst(span)), "bool"))
        if it:
            ok = b.land(ok, b.emit("equal", (b.imod(p, b.iconst(it + 1)), b.iconst(0)), "bool"))
        local = b.land(local, ok)
        src.append(b.ifloordiv(p, b.iconst(it + 1)))
    v = em.value(x, tuple(src), b.land(mask, local))
    if local is None:
        return v
    fill = b.emit("const", (), n.dtype, value=py_scalar(n.attrs["value"], n.dtype))
    return b.emit("where", (local, v, fill), n.dtype)


@inline("concatenate")
def _concatenate(em, n, idx, mask):
    b, ax = em.body, n.attrs["axis"]
    pieces, off = [], 0
    for x in n.inputs:
        k = x.shape[ax]
        i = idx[ax]
        ok = b.land(b.emit("greater_equal", (i, b.iconst(off)), "bool") if off else None,
                    b.emit("less", (i, b.iconst(off + k)), "bool"))
        src = idx[:ax] + (b.isub(i, b.iconst(off)),) + idx[ax + 1:]
        pieces.append((ok, em.value(x, src, b.land(mask, ok))))
        off += k
    res = pieces[-1][1]
    for ok, v in reversed(pieces[:-1]):
        res = b.emit("where", (ok, v, res), n.dtype)
    return res
