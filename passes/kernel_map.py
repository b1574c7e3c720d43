"""From kernels back to graph nodes: which kernels compute each node, and which
nodes stayed apart from their consumers and why.

Fusion folds many graph nodes into one kernel, but a user thinks in the nodes
they built: a profile, a NaN report or the HTML report should name those, with
the file:line that built them. The lowering records the map here once
(`Program.nodes`), from the fusion plan and the buffers it stored:

- a node fusion materialised (it has a buffer) is computed by the kernel that
  writes that buffer;
- any other node (an inlined elementwise or movement op, a reduction read only
  inside its own kernel, a product consumed by its epilogue) is computed inside
  the kernels of its users: recomputed in each of them.

A loop's body (passes/loop.py's ScanLoop) is lowered by a lowering of its own,
which maps the body's nodes to the body's kernels the same way; `build` takes
those maps in and numbers the body kernels after the schedule (position
len(schedule) + i, named `k3_scan/k0_fused`: kernel k0_fused of loop k3_scan's
step), so a body node has its per-step kernel as an outer node has its kernel,
and the loop's position `contains` them for a profile row of the whole loop.

A materialised node is *unfused* when a kernel other than its own reads it, or
when it is a graph output or parameter update: that is what
`fn.stats()["fusion"]` lists, with fusion's reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .fusion import is_source
from .program import LoopKernel, MatmulKernel


@dataclass
class NodeMap:
    order: list                                   # graph nodes, topological (with fusion's synthetic casts)
    kernels: dict = field(default_factory=dict)   # id(node) -> schedule positions that compute it
    reasons: dict = field(default_factory=dict)   # id(node) -> why fusion materialised it
    users: dict = field(default_factory=dict)     # id(node) -> its users
    flat: list = field(default_factory=list)      # position -> kernel (body kernels after the schedule)
    kernel_names: list = field(default_factory=list)   # position -> its name (a body kernel's: loop/kernel)
    within: dict = field(default_factory=dict)    # loop position -> the body kernels' positions, nested ones too
    _by_kernel: dict | None = field(default=None, repr=False)

    def kernels_of(self, node) -> tuple:
        return self.kernels.get(id(node), ())

    def computes(self, position: int) -> list:
        """The nodes that the kernel at schedule `position` computes, in graph order."""
        if self._by_kernel is None:
            self._by_kernel = {}
            for n in self.order:
                for k in self.kernels.get(id(n), ()):
                    self._by_kernel.setdefault(k, []).append(n)
        return list(self._by_kernel.get(position, ()))

    def computes_within(self, position: int) -> list:
        """The nodes the kernel at `position` computes and, for a loop, the nodes its
        body's kernels compute at every step (a profile times the loop as one row)."""
        seen, nodes = set(), []
        for k in (position, *self.within.get(position, ())):
            for n in self.computes(k):
                if id(n) not in seen:
                    seen.add(id(n))
                    nodes.append(n)
        return nodes


def build(plan, store_bufs: dict, schedule: list, base, bodies: dict | None = None) -> NodeMap:
    """plan: passes/fusion.FusionPlan; store_bufs: id(node) -> the buffers storing it;
    base(buffer id) -> the buffer whose memory it is (views resolved); bodies:
    id(ScanLoop) -> the NodeMap of that loop's body."""
    writer = {}
    for pos, k in enumerate(schedule):
        for b in k.writes():
            writer.setdefault(base(b), pos)
    m = NodeMap(list(plan.order), users=dict(plan.users),
                reasons={k: v for k, v in plan.reasons.items()})
    for n in reversed(plan.order):
        if is_source(n):
            continue
        own = {writer[base(b)] for b in store_bufs.get(id(n), ()) if base(b) in writer}
        if not own:
            for u in plan.users.get(id(n), ()):
                own.update(m.kernels.get(id(u), ()))
        m.kernels[id(n)] = tuple(sorted(own))
    m.flat, m.kernel_names = list(schedule), [k.name for k in schedule]
    for pos, k in enumerate(schedule):
        if bodies and id(k) in bodies:
            _take_body(m, pos, k.name, bodies[id(k)])
    return m


def _take_body(m: NodeMap, pos: int, loop_name: str, body: NodeMap) -> None:
    """Number the body's kernels (its nested loops' too) after those `m` has, and map
    the body's nodes to them; the loop at `pos` contains them all."""
    first = len(m.kernel_names)
    m.flat += body.flat
    m.kernel_names += [f"{loop_name}/{name}" for name in body.kernel_names]
    m.within[pos] = tuple(range(first, len(m.kernel_names)))
    for inner, ks in body.within.items():
        m.within[first + inner] = tuple(first + k for k in ks)
    m.order += body.order
    m.users.update(body.users)
    m.reasons.update(body.reasons)
    for key, ks in body.kernels.items():
        m.kernels[key] = tuple(first + k for k in ks)


def unfused(nodes: NodeMap, roots, names: dict) -> list:
    """Rows {node, op, type, where, reason, kernel, read_by} for every node that is
    not fused into its consumers, in graph order (a loop body's nodes after the
    outer graph's, their kernels named loop/kernel). `roots`: ids of the graph's
    outputs and update values; `names`: id(node) -> its name in the text IR (nodes
    without one, fusion's synthetic casts, are left out)."""
    schedule, kname = nodes.flat, nodes.kernel_names
    rows = []
    for n in nodes.order:
        why = nodes.reasons.get(id(n))
        if why is None or is_source(n) or id(n) not in names:
            continue
        own = set(nodes.kernels_of(n))
        readers = set()
        for u in nodes.users.get(id(n), ()):
            readers.update(nodes.kernels_of(u))
        readers -= own
        if not readers and id(n) not in roots:
            continue      # a stage result read only inside its own kernel: fused
        if readers and why.endswith(": materialised"):
            why += "; " + _why_apart(schedule, kname, sorted(own), sorted(readers))
        rows.append({"node": "%" + names[id(n)], "op": n.op, "type": str(n.type), "where": n.where,
                     "reason": why, "kernel": ", ".join(kname[k] for k in sorted(own)),
                     "read_by": [kname[k] for k in sorted(readers)]})
    return rows


def _why_apart(schedule: list, kname: list, own: list, readers: list) -> str:
    """Why a reader kernel did not take the value in: it is a contraction (its
    operands are buffers), the value's own kernel is a product (its epilogue is
    pointwise only), the reader loops over another domain, or the two kernels
    depend on each other otherwise."""
    r = schedule[readers[0]]
    if isinstance(r, MatmulKernel):
        return f"read by {kname[readers[0]]}, a contraction, whose operands are buffers"
    if not isinstance(r, LoopKernel):     # passes/collective.py's AllReduceKernel
        return f"read by {kname[readers[0]]}, an all-reduce, which sends its packed buffer"
    mine = schedule[own[0]] if own else None
    if isinstance(mine, MatmulKernel):
        return f"read by {kname[readers[0]]}: a product's epilogue takes only pointwise work over the product's shape"
    if isinstance(mine, LoopKernel) and tuple(mine.outer) != tuple(r.outer):
        return (f"read by {kname[readers[0]]}, which loops over [{','.join(map(str, r.outer))}], this kernel over "
                f"[{','.join(map(str, mine.outer))}]")
    return f"read by {kname[readers[0]]}, which could not join this kernel (another dependency between them)"
