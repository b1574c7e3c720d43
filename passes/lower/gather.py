"""take, check_index and scatter_add (nngraph/ops/gather.py).

`take` and `check_index` are value rules, inlined into the kernel that reads them as
movement ops are: `take` reads its ids at the point's id axes, makes a negative id
count from the end and clamps the id into [0, n) (so no id ever reads outside the
array: out-of-range calls are reported by the index check ng.compile adds,
nngraph/index_guards.py), then reads x with that id in place of the taken axis.
`check_index` is its input.

`scatter_add` (take's gradient) is one LoopKernel whose outer domain is the axes
before and after the scattered one: each outer point owns its own output elements (a
column of rows), so threads and GPU programs never share one. Stage 0 runs over the
rows and stores zeros; stage 1 runs over the ids: at each id it reads the slice
element and adds it to the row the id names with an accumulating store
(`Store(..., accumulate=True)`: the CPU adds in order within a thread; Triton adds
atomically, since a block holds several ids, after a barrier that orders the zeros
first). A negative id counts from the end; an id still outside the rows adds 0 to row
0 (the call's index check reports it). One kernel writes the buffer, as
passes/kernel_dag.py assumes of every buffer.
"""
from __future__ import annotations

from ..program import Store
from .body import py_scalar
from .registry import inline, lowering

I64 = "int64"


def _clamped_id(em, ids, idx, mask, n):
    b = em.body
    i = b.cast(em.value(ids, idx, mask), I64)
    size, zero = b.isize(n), b.iconst(0)
    i = b.emit("where", (b.emit("less", (i, zero), "bool"), b.iadd(i, size), i), I64)
    i = b.emit("where", (b.emit("less", (i, zero), "bool"), zero, i), I64)
    last = b.isub(size, b.iconst(1))
    return b.emit("where", (b.emit("greater", (i, last), "bool"), last, i), I64)


@inline("take")
def inline_take(em, n, idx, mask):
    x, ids = n.inputs
    ax, k = n.attrs["axis"], ids.ndim
    i = _clamped_id(em, ids, tuple(idx[ax:ax + k]), mask, x.shape[ax])
    return em.value(x, tuple(idx[:ax]) + (i,) + tuple(idx[ax + k:]), mask)


@inline("check_index")
def inline_check_index(em, n, idx, mask):
    return em.value(n.inputs[0], idx, mask)


def _index(b, shape, idx):
    return tuple(b.iconst(0) if s == 1 else i for s, i in zip(shape, idx))


def _zero_stage(ctx, grp, n, outs, pre_len, p):
    st = grp.new_stage((n.attrs["size"],), "map")
    b = st.body
    outer = [b.idx(q) for q in range(p)]
    idx = tuple(outer[:pre_len]) + (b.idx(p),) + tuple(outer[pre_len:])
    zero = b.emit("const", (), n.dtype, value=py_scalar(0, n.dtype))
    for bb in outs:
        st.stores.append(Store(bb, _index(b, ctx.buffers[bb].shape, idx), zero))


def _row(b, raw, size):
    """(row to add to, whether the id names a row) for an int64 id."""
    zero, n = b.iconst(0), b.isize(size)
    i = b.emit("where", (b.emit("less", (raw, zero), "bool"), b.iadd(raw, n), raw), I64)
    ok = b.land(b.emit("greater_equal", (i, zero), "bool"), b.emit("less", (i, n), "bool"))
    return b.emit("where", (ok, i, zero), I64), ok


@lowering("scatter_add")
def lower_scatter_add(ctx, n):
    g, ids = n.inputs
    ax, k = n.attrs["axis"], ids.ndim
    outs = ctx.store_bufs[id(n)]
    pre, post = tuple(g.shape[:ax]), tuple(g.shape[ax + k:])
    grp = ctx.new_group(pre + post)
    p = len(pre) + len(post)
    _zero_stage(ctx, grp, n, outs, len(pre), p)
    st = grp.new_stage(tuple(ids.shape), "map")
    b, em = st.body, st.emitter
    outer = [b.idx(q) for q in range(p)]
    inner = [b.idx(p + t) for t in range(k)]
    value = b.cast(em.value(g, tuple(outer[:len(pre)]) + tuple(inner) + tuple(outer[len(pre):])), n.dtype)
    row, ok = _row(b, b.cast(em.value(ids, tuple(inner)), I64), n.attrs["size"])
    value = b.emit("where", (ok, value, b.emit("const", (), n.dtype, value=py_scalar(0, n.dtype))), n.dtype)
    idx = tuple(outer[:len(pre)]) + (row,) + tuple(outer[len(pre):])
    for bb in outs:
        st.stores.append(Store(bb, _index(b, ctx.buffers[bb].shape, idx), value, accumulate=True))
    grp.members.append(n)
    ctx.group_of[id(n)] = grp
    ctx.note_reads(grp, em.loads)
    ctx.note_writes(grp, outs)
