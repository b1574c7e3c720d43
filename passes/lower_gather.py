"""How `take` and `check_index` (nngraph/ops/gather.py) become body instructions.

Both are inlined into the kernel that reads them, as movement ops are: `take`
reads its ids at the point's id axes, makes a negative id count from the end and
clamps the id into [0, n) (so no id ever reads outside the array: out-of-range
calls are reported by the index check ng.compile adds, nngraph/index_guards.py),
then reads x with that id in place of the taken axis. `check_index` is its input.

`INLINE_RULES` maps op name -> rule(emitter, node, index, mask) -> body value;
passes/lower_ops.py consults it for ops it does not know itself.
"""
from __future__ import annotations

I64 = "int64"


def _clamped_id(em, ids, idx, mask, n):
    b = em.body
    i = b.cast(em.value(ids, idx, mask), I64)
    size, zero = b.isize(n), b.iconst(0)
    i = b.emit("where", (b.emit("less", (i, zero), "bool"), b.iadd(i, size), i), I64)
    i = b.emit("where", (b.emit("less", (i, zero), "bool"), zero, i), I64)
    last = b.isub(size, b.iconst(1))
    return b.emit("where", (b.emit("greater", (i, last), "bool"), last, i), I64)


def inline_take(em, n, idx, mask):
    x, ids = n.inputs
    ax, k = n.attrs["axis"], ids.ndim
    i = _clamped_id(em, ids, tuple(idx[ax:ax + k]), mask, x.shape[ax])
    return em.value(x, tuple(idx[:ax]) + (i,) + tuple(idx[ax + k:]), mask)


def inline_check_index(em, n, idx, mask):
    return em.value(n.inputs[0], idx, mask)


INLINE_RULES = {"take": inline_take, "check_index": inline_check_index}
