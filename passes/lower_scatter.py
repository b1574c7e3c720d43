"""How `scatter_add` (nngraph/ops/gather.py) becomes a kernel.

One LoopKernel whose outer domain is the axes before and after the scattered one:
each outer point owns its own output elements (a column of rows), so threads and
GPU programs never share one. Stage 0 runs over the rows and stores zeros; stage 1
runs over the ids: at each id it reads the slice element and adds it to the row the
id names with an accumulating store (`Store(..., accumulate=True)`: the CPU adds in
order within a thread; Triton adds atomically, since a block holds several ids, after
a barrier that orders the zeros first). A negative id counts from the end; an id
still outside the rows adds 0 to row 0 (the call's index check,
nngraph/index_guards.py, reports it). One kernel writes the buffer, as
passes/kernel_dag.py assumes of every buffer.

`LOWER` maps the op name to its lowering, as passes/lower_windows.py does.
"""
from __future__ import annotations

from .lower_ops import py_scalar
from .program import Store

I64 = "int64"


def _index(b, shape, idx):
    return tuple(b.iconst(0) if s == 1 else i for s, i in zip(shape, idx))


def _zero_stage(low, grp, n, outs, pre_len, p):
    st = grp.new_stage((n.attrs["size"],), "map")
    b = st.body
    outer = [b.idx(q) for q in range(p)]
    idx = tuple(outer[:pre_len]) + (b.idx(p),) + tuple(outer[pre_len:])
    zero = b.emit("const", (), n.dtype, value=py_scalar(0, n.dtype))
    for bb in outs:
        st.stores.append(Store(bb, _index(b, low.buffers[bb].shape, idx), zero))


def _row(b, raw, size):
    """(row to add to, whether the id names a row) for an int64 id."""
    zero, n = b.iconst(0), b.isize(size)
    i = b.emit("where", (b.emit("less", (raw, zero), "bool"), b.iadd(raw, n), raw), I64)
    ok = b.land(b.emit("greater_equal", (i, zero), "bool"), b.emit("less", (i, n), "bool"))
    return b.emit("where", (ok, i, zero), I64), ok


def lower_scatter_add(low, n):
    g, ids = n.inputs
    ax, k = n.attrs["axis"], ids.ndim
    outs = low.store_bufs[id(n)]
    pre, post = tuple(g.shape[:ax]), tuple(g.shape[ax + k:])
    grp = low.new_group(pre + post)
    p = len(pre) + len(post)
    _zero_stage(low, grp, n, outs, len(pre), p)
    st = grp.new_stage(tuple(ids.shape), "map")
    b, em = st.body, st.emitter
    outer = [b.idx(q) for q in range(p)]
    inner = [b.idx(p + t) for t in range(k)]
    value = b.cast(em.value(g, tuple(outer[:len(pre)]) + tuple(inner) + tuple(outer[len(pre):])), n.dtype)
    row, ok = _row(b, b.cast(em.value(ids, tuple(inner)), I64), n.attrs["size"])
    value = b.emit("where", (ok, value, b.emit("const", (), n.dtype, value=py_scalar(0, n.dtype))), n.dtype)
    idx = tuple(outer[:len(pre)]) + (row,) + tuple(outer[len(pre):])
    for bb in outs:
        st.stores.append(Store(bb, _index(b, low.buffers[bb].shape, idx), value, accumulate=True))
    grp.members.append(n)
    low.group_of[id(n)] = grp
    low.note_reads(grp, em.loads)
    low.note_writes(grp, outs)


LOWER = {"scatter_add": lower_scatter_add}
