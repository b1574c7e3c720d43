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


def build(plan, store_bufs: dict, schedule: list, base) -> NodeMap:
    """plan: passes/fusion.FusionPlan; store_bufs: id(node) -> the buffers storing it;
    base(buffer id) -> the buffer whose memory it is (views resolved)."""
    writer = {}
    for pos, k in enumerate(schedule):
        for b in k.writes():
            writer.setdefault(base(b), pos)
    m = NodeMap(list(plan.order), users=plan.users,
                reasons={k: v for k, v in plan.reasons.items()})
    for n in reversed(plan.order):
        if is_source(n):
            continue
        own = {writer[base(b)] for b in store_bufs.get(id(n), ()) if base(b) in writer}
        if not own:
            for u in plan.users.get(id(n), ()):
                own.update(m.kernels.get(id(u), ()))
        m.kernels[id(n)] = tuple(sorted(own))
    return m


def unfused(nodes: NodeMap, roots, schedule: list, names: dict) -> list:
    """Rows {node, op, type, where, reason, kernel, read_by} for every node that is
    not fused into its consumers, in graph order. `roots`: ids of the graph's
    outputs and update values; `names`: id(node) -> its name in the text IR (nodes
    without one, fusion's synthetic casts, are left out)."""
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
            why += "; " + _why_apart(schedule, sorted(own), sorted(readers))
        rows.append({"node": "%" + names[id(n)], "op": n.op, "type": str(n.type), "where": n.where,
                     "reason": why, "kernel": ", ".join(schedule[k].name for k in sorted(own)),
                     "read_by": [schedule[k].name for k in sorted(readers)]})
    return rows


def _why_apart(schedule: list, own: list, readers: list) -> str:
    """Why a reader kernel did not take the value in: it is a contraction (its
    operands are buffers), the value's own kernel is a product (its epilogue is
    pointwise only), the reader loops over another domain, or the two kernels
    depend on each other otherwise."""
    r = schedule[readers[0]]
    if isinstance(r, MatmulKernel):
        return f"read by {r.name}, a contraction, whose operands are buffers"
    if not isinstance(r, LoopKernel):     # passes/collective.py's AllReduceKernel
        return f"read by {r.name}, an all-reduce, which sends its packed buffer"
    mine = schedule[own[0]] if own else None
    if isinstance(mine, MatmulKernel):
        return f"read by {r.name}: a product's epilogue takes only pointwise work over the product's shape"
    if isinstance(mine, LoopKernel) and tuple(mine.outer) != tuple(r.outer):
        return (f"read by {r.name}, which loops over [{','.join(map(str, r.outer))}], this kernel over "
                f"[{','.join(map(str, mine.outer))}]")
    return f"read by {r.name}, which could not join this kernel (another dependency between them)"
