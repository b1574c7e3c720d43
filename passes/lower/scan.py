"""Lowering of `scan` (nngraph/ops/scan.py) into a ScanLoop of the Program
(passes/loop.py); `scan_output` nodes are the buffers the loop writes.

The body graph is lowered like any graph, by a `BodyLowering` that shares the
outer lowering's buffers: its inputs are bound to the loop's buffers (each carry's
state, the step buffer of each xs, each closed-over value's own buffer) and its
outputs are stored into the loop's (each carry's next value, the step buffer of
each stacked y). Fusion inside the body works as anywhere else, so the per-step
pointwise work (gates, cell update) becomes one kernel, the products BLAS calls.

Buffers of the results: a carry's state is the buffer of its `scan_output` (so
the final carry lands where its readers look), a stacked y is its `scan_output`'s
buffer, whose slices the body writes in place; a result nobody reads gets a temp.
A result stored in more buffers than one (a graph output that is also an update)
is copied into the others after the loop.
"""
from __future__ import annotations

from nngraph.types import TensorType

from .. import kernel_map
from ..loop import Carry, ScanLoop, StepSlice
from ..loop_hoist import HOISTED
from ..program import Store
from .assemble import ordered_kernels
from .context import LoweringContext
from .registry import lowering


class BodyLowering(LoweringContext):
    """The lowering of a scan's body graph into kernels over the outer lowering's buffers."""

    def __init__(self, outer: LoweringContext, graph, in_bufs, out_bufs):
        super().__init__(graph, outer.opt)
        self.buffers, self.names = outer.buffers, outer.names     # one id space, one set of names
        self.in_bufs, self.out_bufs = list(in_bufs), list(out_bufs)

    def make_source_buffers(self):
        self.inputs, self.params = [], []
        for ph, b in zip(self.graph.inputs, self.in_bufs):
            self.buf_of[id(ph)] = b

    def make_result_buffers(self):
        self.outputs, self.updates = [], []
        for o, b in zip(self.graph.outputs, self.out_bufs):
            self.store_bufs.setdefault(id(o), []).append(b)

    def returns(self, b: int) -> bool:
        """The body's results are the loop's buffers (next carries, step slices of ys)."""
        return b in self.out_bufs or super().returns(b)

    def kernels(self) -> list:
        self.walk()
        return ordered_kernels(self)

    def node_map(self, kernels: list):
        """Which body kernels compute each body node (passes/kernel_map.py)."""
        return kernel_map.build(self.plan, self.store_bufs, kernels, self.root, self.body_maps)


def _result_buffers(low, node, index):
    """The buffers storing result `index` of scan `node` (its scan_output's), or []."""
    for u in low.plan.users.get(id(node), ()):
        if u.op == "scan_output" and u.attrs["index"] == index and id(u) in low.store_bufs:
            return low.store_bufs[id(u)]
    return []


def _own(low, node, index, type_, name):
    """(the buffer result `index` is computed in, the other buffers it is copied to)."""
    bufs = _result_buffers(low, node, index)
    if bufs:
        return bufs[0], list(bufs[1:])
    return low.add_buffer(name, type_, "temp", node), []


@lowering("scan")
def lower_scan(low, n) -> None:
    body = n.attrs["body"]
    k, nx = body.n_carry, body.n_xs
    parts = n.type.parts
    carries, slices, extra = [], [], []
    for i, (init, ph) in enumerate(zip(n.inputs[:k], body.carry_in)):
        state, more = _own(low, n, i, parts[i], f"carry{i}")
        nxt = low.add_buffer(f"carry{i}_next", parts[i], "temp", n)
        carries.append(Carry(state, nxt, low.operand_buffer(init, init.dtype)))
        extra.append((state, more))
    xs_steps = []
    for j, (xs, ph) in enumerate(zip(n.inputs[k:k + nx], body.xs_in)):
        stacked = low.operand_buffer(xs, xs.dtype)
        step = low.add_buffer(f"{ph.name or 'x'}_t", ph.type, "step", n, view_of=stacked)
        slices.append(StepSlice(stacked, step))
        xs_steps.append(step)
    closure = [low.operand_buffer(c, c.dtype) for c in n.inputs[k + nx:]]
    ys_steps = []
    for j, y in enumerate(body.ys_out):
        stacked, more = _own(low, n, k + j, parts[k + j], f"ys{j}")
        step = low.add_buffer(f"y{j}_t", TensorType(y.dtype, tuple(y.shape)), "step", n, view_of=stacked)
        slices.append(StepSlice(stacked, step))
        ys_steps.append(step)
        extra.append((stacked, more))
    sub = BodyLowering(low, body.graph, [c.state for c in carries] + xs_steps + closure,
                       [c.next for c in carries] + ys_steps)
    kernels = sub.kernels()
    touched = set().union(*[k.reads() | k.writes() for k in kernels]) if kernels else set()
    slices = [s for s in slices if s.step in touched]        # xs the step no longer reads
    loop = ScanLoop("k_scan", n.attrs["length"], kernels, tuple(carries), tuple(slices),
                    bool(n.attrs["reverse"]), source=f"scan@{n.where}", notes=_notes(n))
    low.body_maps[id(loop)] = sub.node_map(kernels)
    g = low.new_group((), loop)
    ys_stacked = {s.stacked for s in slices if s.step in ys_steps}
    low.note_reads(g, loop.reads() - loop.writes() | {c.init for c in carries}
                   | {s.stacked for s in slices if s.step in xs_steps})
    low.note_writes(g, {c.state for c in carries} | ys_stacked)
    g.members.append(n)
    low.group_of[id(n)] = g
    for src, dsts in extra:
        if dsts:
            _copy(low, n, src, dsts)


def _notes(n) -> dict:
    """The per-step inputs that passes/loop_hoist.py computed for all steps before the
    loop (its placeholders are named hoisted<j>), for dumps and fn.stats()["loops"]."""
    body = n.attrs["body"]
    k = body.n_carry
    moved = [f"{x.op}:{x.type}@{x.where}" for x, ph in zip(n.inputs[k:k + body.n_xs], body.xs_in)
             if (ph.name or "").startswith(HOISTED)]
    return {"hoisted": moved} if moved else {}


def _copy(low, n, src, dsts):
    """One map kernel: every buffer of `dsts` = `src`."""
    shape = low.buffers[src].shape
    g = low.new_group(tuple(shape))
    st = g.new_stage((), "map")
    idx = tuple(st.body.idx(q) for q in range(len(shape)))
    v = st.emitter.load(src, idx)
    st.stores += [Store(d, idx, v) for d in dsts]
    g.members.append(n)
    low.note_reads(g, {src})
    low.note_writes(g, set(dsts))


@lowering("scan_output")
def lower_scan_output(low, n) -> None:
    """Nothing to do: the scan's loop writes this result's buffers (lower_scan)."""
