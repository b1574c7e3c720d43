"""Lowering of all_reduce nodes (nngraph/ops/collective.py) into pack kernels, one
AllReduceKernel per bucket, and unpack kernels (passes/collective.py). The walk
(passes/lower/context.py) visits nodes in `phase_order`.

Buckets: an all_reduce node's *phase* is the number of all_reduce nodes on the
longest path into it (itself included). Nodes of one phase never depend on each
other, so all of them with a static shape and one dtype share one packed buffer
and one call; a node of symbolic shape gets a bucket of its own. `phase_order`
reorders the lowering's node order so that each phase's all_reduce nodes come
together, after everything they read and before everything that reads them; the
first node of a bucket lowers the whole bucket.

The world size is read when the graph is compiled (`ng.distributed.size()`), so
a mean's 1/ranks is a constant of the unpack kernels and a single process gets
the same kernels with a copy in place of the MPI call.
"""
from __future__ import annotations

from nngraph import distributed
from nngraph.types import TensorType

from ..collective import AllReduceKernel
from ..fusion import label
from ..program import Store
from .registry import lowering


def _phases(order) -> dict:
    """id(node) -> number of all_reduce nodes on the longest path into it (inclusive)."""
    depth = {}
    for n in order:
        d = max((depth[id(i)] for i in n.inputs), default=0)
        depth[id(n)] = d + (n.op == "all_reduce")
    return depth


def phase_order(order) -> list:
    """`order` (topological) stably sorted so that each phase's all_reduce nodes are
    adjacent: nodes of depth d come at 2d, all_reduce nodes of depth d at 2d - 1."""
    if not any(n.op == "all_reduce" for n in order):
        return order
    depth = _phases(order)
    key = {id(n): 2 * depth[id(n)] - (n.op == "all_reduce") for n in order}
    return sorted(order, key=lambda n: key[id(n)])


def _buckets(order) -> list:
    """Lists of all_reduce nodes reduced by one call each, in phase order."""
    depth = _phases(order)
    groups: dict = {}
    for n in order:
        if n.op != "all_reduce":
            continue
        static = n.type.is_static
        key = (depth[id(n)], n.dtype) if static else ("symbolic", id(n))
        groups.setdefault(key, []).append(n)
    return list(groups.values())


@lowering("all_reduce")
def lower_all_reduce(low, n) -> None:
    """Lower n's whole bucket when n is its first node (phase_order reaches a bucket's
    nodes in that order, so the others find their bucket lowered)."""
    bucket = next(b for b in _buckets(low.plan.order) if any(m is n for m in b))
    if bucket[0] is not n:
        return
    ranks = distributed.size()
    static = all(m.type.is_static for m in bucket)
    if static:
        sizes = [_numel(m.shape) for m in bucket]
        offsets = [sum(sizes[:k]) for k in range(len(bucket))]
        shape = (sum(sizes),)
    else:
        (m,) = bucket
        sizes, offsets, shape = [None], [0], tuple(m.shape)
    dtype = bucket[0].dtype
    send = low.add_buffer("allreduce_pack", TensorType(dtype, shape), "temp", bucket[0])
    recv = low.add_buffer("allreduce_sum", TensorType(dtype, shape), "temp", bucket[0])
    _copy_kernel(low, bucket, offsets, send, static, pack=True)
    members = tuple((label(m), off, size if size is not None else "*".join(map(str, m.shape)))
                    for m, off, size in zip(bucket, offsets, sizes))
    kern = AllReduceKernel("k_all_reduce", send, recv, ranks, members,
                           source=", ".join(label(m) for m in bucket))
    g = low.new_group(shape, kern)
    low.note_reads(g, {send})
    low.note_writes(g, {recv})
    _copy_kernel(low, bucket, offsets, recv, static, pack=False, ranks=ranks)


def _numel(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def _copy_kernel(low, bucket, offsets, buf, flat, pack, ranks=1):
    """One kernel with a map stage per member over its shape (so `buf` has one
    writer). pack: buf[offset + flat index] = the member's operand; unpack: the
    member's buffers = buf[...] (times 1/ranks for a mean)."""
    g = low.new_group(())
    targets = set()
    for m, offset in zip(bucket, offsets):
        st = g.new_stage(tuple(m.shape), "map")
        body = st.body
        idx = tuple(body.idx(k) for k in range(m.ndim))
        where = _flat_index(body, m.shape, idx, offset) if flat else idx
        if pack:
            st.stores.append(Store(buf, where, st.emitter.value(m.inputs[0], idx)))
            targets.add(buf)
        else:
            v = st.emitter.load(buf, where)
            if m.attrs["reduce"] == "mean" and ranks > 1:
                v = body.emit("mul", (v, body.emit("const", (), m.dtype, value=1.0 / ranks)), m.dtype)
            for b in low.store_bufs[id(m)]:
                st.stores.append(Store(b, low.store_index(body, b, idx), v))
                targets.add(b)
        g.members.append(m)
        low.note_reads(g, st.emitter.loads)
    low.note_writes(g, targets)


def _flat_index(body, shape, idx, offset) -> tuple:
    flat, stride = body.iconst(offset), 1
    for k in range(len(shape) - 1, -1, -1):
        flat = body.iadd(flat, body.imul(idx[k], body.iconst(stride)))
        stride *= int(shape[k])
    return (flat,)

