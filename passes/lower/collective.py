"""Lowering of all_reduce nodes (nngraph/ops/collective.py): one AllReduceKernel per
bucket (passes/collective.py) over two packed buffers laid out by the lowering
itself, so that no copy kernel stands between the backward pass and MPI.

Buckets: an all_reduce node's *phase* is the number of all_reduce nodes on the
longest path into it (itself included). Nodes of one phase never depend on each
other, so those with a static shape and one dtype may share a bucket: one packed
buffer, one MPI_Iallreduce (started as soon as the bucket's last operand is written)
and one MPI_Wait (before the first kernel that reads a result). Within a phase they
are taken in the order the step computes their operands (the backward pass yields
the last layer's gradients first) and cut into buckets of about 1 MiB for the first
and 25 MiB after (PyTorch DDP's defaults), so that the first reduction is in flight
while the backward pass computes the rest. A node of symbolic shape gets a bucket
of its own. `phase_order` reorders the
lowering's node order so that each phase's all_reduce nodes come together, after
everything they read and before everything that reads them; the first node of a
bucket lowers the whole bucket.

Packing in place (`pack_all_reduces`, before any kernel is built): every member's
operand gets a *part* of the bucket's `send` buffer (a view with an offset,
passes/program.py), and every member's value a part of `recv`. An operand that a
kernel materialises anyway (a weight gradient from its matmul, a bias gradient
from its reduction, seen through the reshapes that drop its kept axis) and that
nothing else reads is then written by that kernel straight into its part: the
lowering's buffer layout, not a copy, packs it. The all_reduce
node's own value is its part of `recv`, read in place by its consumers. Only these
need a kernel of the bucket's own: an operand that is a source, is read by other
nodes too or is stored elsewhere (an output) is copied into its part, and an
elementwise operand that nothing materialises is computed into it (the pack
kernel); a member that is returned or updates a parameter, or a mean not split by
the `all_reduce_means` pass, is copied out of `recv` (the unpack kernel).

The world size is read when the graph is compiled (`ng.distributed.size()`), so a
single process gets the same kernels with a copy in place of the MPI call.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nngraph import distributed
from nngraph.types import TensorType, np_dtype

from .. import fusion
from ..collective import STEPS, AllReduceKernel
from ..fusion import label
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


# bucket sizes, PyTorch DistributedDataParallel's defaults (not tuned to a machine): a
# small first bucket, so that the first reduction starts early in the backward pass
FIRST_BUCKET_BYTES = 1 << 20
BUCKET_BYTES = 25 << 20


def _buckets(order) -> list:
    """(phase key, list of all_reduce nodes reduced by one call), in phase order; within a
    phase, in the order their operands can be ready (the longest path into each),
    cut into buckets of about FIRST_BUCKET_BYTES, then BUCKET_BYTES, so that each
    call can start while later operands are still being computed (the schedule runs
    the work of earlier buckets first: assemble._priority)."""
    depth = _phases(order)
    ready = _longest_paths(order)
    groups: dict = {}
    for n in order:
        if n.op != "all_reduce":
            continue
        static = n.type.is_static
        key = (depth[id(n)], n.dtype) if static else ("symbolic", id(n))
        groups.setdefault(key, []).append(n)
    out = []
    for key, nodes in groups.items():
        out += [(key, b) for b in _cut(sorted(nodes, key=lambda m: ready[id(m.inputs[0])]))]  # stable
    return out


def _longest_paths(order) -> dict:
    """id(node) -> nodes on the longest path into it: how late in a step it can be
    ready (a backward pass reaches the last layer's gradients first)."""
    length = {}
    for n in order:
        length[id(n)] = 1 + max((length[id(i)] for i in n.inputs), default=0)
    return length


def _cut(nodes) -> list:
    """`nodes` (in the order their operands are computed) in buckets: a node that would
    take its bucket past the bucket size starts the next one (a node larger than the
    size gets a bucket of its own)."""
    buckets, current, size = [], [], 0
    for m in nodes:
        nbytes = _numel(m.shape) * np_dtype(m.dtype).itemsize if m.type.is_static else 0
        if current and size + nbytes > (FIRST_BUCKET_BYTES if not buckets else BUCKET_BYTES):
            buckets.append(current)
            current, size = [], 0
        current.append(m)
        size += nbytes
    return buckets + ([current] if current else [])


@dataclass
class Bucket:
    """One call's packed buffers and, per member, its parts and how they are filled."""
    nodes: list
    send: int
    recv: int
    offsets: list
    sizes: list                                   # elements per member (None: symbolic)
    send_parts: list = field(default_factory=list)
    recv_parts: list = field(default_factory=list)
    in_place: list = field(default_factory=list)  # operand written into its part by its own kernel
    copied_out: list = field(default_factory=list)  # value copied from recv to the node's buffers
    phase: tuple = ()                             # buckets of one phase are lowered together
    lowered: bool = False


def pack_all_reduces(low) -> None:
    """Lay out every bucket's packed buffers and point operands and results at their
    parts (before the walk, so the kernels that compute the operands store there)."""
    _packs(low)


def _packs(low) -> list:
    return low.cached("all_reduce_buckets", lambda: _lay_out(low))


def _lay_out(low) -> list:
    out, taken = [], set()
    ranks = distributed.size()
    for phase, nodes in _buckets(low.plan.order):
        out.append(_lay_out_bucket(low, nodes, ranks, taken))
        out[-1].phase = phase
    return out


def _lay_out_bucket(low, nodes, ranks, taken) -> Bucket:
    if all(m.type.is_static for m in nodes):
        sizes = [_numel(m.shape) for m in nodes]
        offsets = [sum(sizes[:k]) for k in range(len(nodes))]
        shape = (sum(sizes),)
    else:
        (m,) = nodes
        sizes, offsets, shape = [None], [0], tuple(m.shape)
    dtype = nodes[0].dtype
    send = low.add_buffer("allreduce_pack", TensorType(dtype, shape), "temp", nodes[0])
    recv = low.add_buffer("allreduce_sum", TensorType(dtype, shape), "temp", nodes[0])
    bk = Bucket(nodes, send, recv, offsets, sizes)
    for m, off in zip(nodes, offsets):
        src = _stored_in_place(low, m, taken)
        bk.in_place.append(src is not None)
        src = m.inputs[0] if src is None else src
        part = low.view(send, src.shape, f"{_short(src)}_packed", offset=off)
        bk.send_parts.append(part)
        if bk.in_place[-1]:
            taken.add(id(src))
            low.store_bufs[id(src)] = [part]
            low.buf_of[id(src)] = part
        rpart = low.view(recv, m.shape, f"{_short(m)}_reduced", offset=off)
        bk.recv_parts.append(rpart)
        scaled = m.attrs["reduce"] == "mean" and ranks > 1
        own = low.store_bufs.get(id(m), [])
        bk.copied_out.append(scaled or not (len(own) == 1 and low.buffers[own[0]].kind == "temp"))
        if not bk.copied_out[-1]:
            low.store_bufs[id(m)] = [rpart]
            low.buf_of[id(m)] = rpart
    return bk


def _stored_in_place(low, m, taken):
    """The node whose kernel may store all_reduce m's operand straight into m's part of
    the pack, or None: the operand, or below reshapes nothing materialises (a bias
    gradient's [1,n] -> [n]: the same elements in the same order), the value they
    relabel; it must be computed (not a source), materialised into a temp of its own,
    and read by that chain alone."""
    user, x = m, m.inputs[0]
    while x.op == "reshape" and id(x) not in low.store_bufs and _only_user(low, x, user):
        user, x = x, x.inputs[0]
    bufs = low.store_bufs.get(id(x))
    if (fusion.is_source(x) or id(x) in taken or bufs is None or len(bufs) != 1
            or low.buffers[bufs[0]].kind != "temp" or not _only_user(low, x, user)):
        return None
    return x


def _only_user(low, x, user) -> bool:
    return [id(u) for u in low.plan.users.get(id(x), ())] == [id(user)]


def _short(n) -> str:
    return n.name or f"t_{n.op}"


@lowering("all_reduce")
def lower_all_reduce(low, n) -> None:
    """Lower every bucket of n's phase, in bucket order, when the walk reaches the first
    of them (phase_order brings a phase's nodes after everything they read), so the
    kernels of the bucket that can start first are built first."""
    bk = next(b for b in _packs(low) if any(m is n for m in b.nodes))
    for b in _packs(low):
        if b.phase == bk.phase and not b.lowered:
            _lower_bucket(low, b)
            b.lowered = True


def _lower_bucket(low, bk: Bucket) -> None:
    """The bucket's pack kernel (when a member is not written in place), its start and
    wait, and its unpack kernel (when a member is copied out)."""
    ranks = distributed.size()
    if not all(bk.in_place):
        _pack_kernel(low, bk)
    members = tuple((label(m), off, size if size is not None else "*".join(map(str, m.shape)))
                    for m, off, size in zip(bk.nodes, bk.offsets, bk.sizes))
    request = low.add_buffer("allreduce_request", TensorType("int64", (1,)), "temp", bk.nodes[0])
    shape = tuple(low.buffers[bk.send].shape)
    for step in STEPS:
        kern = AllReduceKernel(f"k_all_reduce_{step}", step, bk.send, bk.recv, request, ranks, members,
                               source=", ".join(label(m) for m in bk.nodes),
                               send_parts=tuple(bk.send_parts), recv_parts=tuple(bk.recv_parts),
                               in_place=tuple(bk.in_place))
        g = low.new_group(shape, kern)
        low.note_reads(g, kern.reads())
        low.note_writes(g, kern.writes())
    if any(bk.copied_out):
        _unpack_kernel(low, bk, ranks)


def _numel(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def _pack_kernel(low, bk: Bucket) -> None:
    """One kernel with a map stage per member not written in place: its operand's value
    (copied, or computed where nothing materialised it) stored into its part."""
    g = low.new_group(())
    targets = set()
    for m, part, done in zip(bk.nodes, bk.send_parts, bk.in_place):
        if done:
            continue
        st = g.new_stage(tuple(m.shape), "map")
        idx = tuple(st.body.idx(k) for k in range(m.ndim))
        st.stores.append(low.store(st.body, part, idx, st.emitter.value(m.inputs[0], idx)))
        targets.add(part)
        g.members.append(m)
        low.note_reads(g, st.emitter.loads)
    low.note_writes(g, targets)


def _unpack_kernel(low, bk: Bucket, ranks: int) -> None:
    """One kernel with a map stage per member copied out of recv into the buffers the
    node's value must be in (returned, an update; times 1/ranks for a mean)."""
    g = low.new_group(())
    targets = set()
    for m, part, out in zip(bk.nodes, bk.recv_parts, bk.copied_out):
        if not out:
            continue
        st = g.new_stage(tuple(m.shape), "map")
        body = st.body
        idx = tuple(body.idx(k) for k in range(m.ndim))
        v = st.emitter.load(part, idx)
        if m.attrs["reduce"] == "mean" and ranks > 1:
            v = body.emit("mul", (v, body.emit("const", (), m.dtype, value=1.0 / ranks)), m.dtype)
        for b in low.store_bufs[id(m)]:
            st.stores.append(low.store(body, b, idx, v))
            targets.add(b)
        g.members.append(m)
        low.note_reads(g, st.emitter.loads)
    low.note_writes(g, targets)
