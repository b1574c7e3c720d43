"""Fusion partition: which graph values get a buffer, and which ride in a
contraction's epilogue. `passes/lowering.py` then groups the materialised values
into kernels.

The rule (opt_level >= 1), with the reason recorded for every decision:

- materialise what must exist in memory: outputs and parameter updates, every
  reduction (its result is a stage result inside its kernel, and a buffer when
  another kernel reads it), every contraction (unless its epilogue absorbs it),
  and the operands of contractions (a transpose of a buffer is read through
  trans_a/trans_b instead, a batch broadcast of a matrix by reusing it);
- a contraction's epilogue (an op with `Op.takes_epilogue`) takes every
  elementwise value of the product's shape that is computed from the product (at
  the same point) and from values that do not depend on it; those of them that other kernels need (the "frontier":
  relu(x@W + b) for the next layer, the mask x@W + b > 0 for the backward pass)
  are stored by the epilogue, the rest are never materialised;
- every other elementwise or movement value is recomputed in each kernel that
  uses it (cheap), unless several kernels use it and its inlined cone is
  expensive (cost > RECOMPUTE_LIMIT, summing each op's `Op.cost`: transcendental
  ops weigh 4): then it is materialised once.

opt_level 0 materialises every op: one kernel per op.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nngraph.graph import users as graph_users
from nngraph.node import OPS, Tensor, make

RECOMPUTE_LIMIT = 16
MATERIALISED_KINDS = ("reduction", "contraction", "special")


@dataclass
class FusionPlan:
    order: list                                   # nodes, topological
    reasons: dict = field(default_factory=dict)   # id(node) -> why it is materialised
    epilogue: dict = field(default_factory=dict)  # id(contraction: matmul, conv2d) -> frontier nodes
                                                  # (the contraction first if stored)
    owner: dict = field(default_factory=dict)     # id(frontier node) -> its contraction
    operands: dict = field(default_factory=dict)  # id(matmul) -> ((node, trans), (node, trans))
    users: dict = field(default_factory=dict)
    inside: set = field(default_factory=set)      # ids of epilogue values that are never stored
    pinned: set = field(default_factory=set)      # ids of source-only cones that epilogues inline


def is_source(n: Tensor) -> bool:
    """A placeholder, parameter or constant: a buffer of its own, never computed."""
    return OPS[n.op].kind == "source"


def scalar_const(n: Tensor) -> bool:
    """A constant that lowers to an inline `const` (one element)."""
    return n.op == "constant" and n.attrs["value"].array.size == 1


def label(n: Tensor) -> str:
    return f"{n.name or n.op}:{n.type}@{n.where}"


def decide(graph, opt_level: int = 2) -> FusionPlan:
    order = graph.nodes()
    plan = FusionPlan(order)
    reasons = plan.reasons
    roles = {id(o) for o in graph.outputs} | {id(v) for _, v in graph.updates}

    def force(n, why):
        if not is_source(n) and id(n) not in reasons:
            reasons[id(n)] = why

    # contraction operands first: they may add synthetic cast nodes to the order
    extra = {}
    transposes = {}      # (id(x), perm) -> transpose(x, perm) materialised for a product before this one
    for n in order:
        if n.op == "matmul":
            ops = []
            for o in n.inputs:
                base, trans, cast_node = _operand(o, n.dtype, opt_level, transposes)
                if cast_node is not None:
                    extra.setdefault(id(n), []).append(cast_node)
                    force(cast_node, "matmul operand cast to the product's dtype")
                elif opt_level >= 1:
                    force(base, "matmul operand" + (" (read transposed)" if trans else ""))
                ops.append((base, trans))
            plan.operands[id(n)] = tuple(ops)
            transposes.update({(id(b.inputs[0]), tuple(b.attrs["perm"])): b for b, _ in ops if b.op == "transpose"})
    if extra:
        new = []
        for n in order:
            new += extra.get(id(n), [])
            new.append(n)
        order[:] = new
    plan.users = graph_users(order)

    for n in order:
        if is_source(n):
            continue
        if id(n) in roles:
            force(n, "graph output or parameter update")
        if opt_level == 0 and not scalar_const(n):
            force(n, "opt_level 0: one kernel per op")
        kind = OPS[n.op].kind
        if kind in MATERIALISED_KINDS:
            force(n, f"{kind}: materialised")
    if opt_level == 0:
        return plan

    _epilogues(plan, roles)
    _expensive_shared(plan)
    return plan


def _operand(o: Tensor, dtype: str, opt_level: int, transposes: dict | None = None):
    """(buffer node, transposed, synthetic cast node or None) for a matmul operand.
    `transposes` maps (id(x), perm) to the transpose(x, perm) nodes that are operands of
    the products before this one: an operand transpose(x, p) is read transposed from
    such an operand transpose(x, q), materialised anyway (and earlier), when p is q with
    the last two axes swapped and q keeps their order in x (the weight gradient Xᵀ·dZ
    summed over a time-first copy X = transpose(x) of a batch-first input: that copy, not
    a second one)."""
    if o.dtype != dtype:
        c = make("cast", (o,), dtype=dtype)
        return c, False, c
    if opt_level >= 1:
        if o.op == "broadcast_to" and o.inputs[0].ndim >= 2 and tuple(o.inputs[0].shape[-2:]) == tuple(o.shape[-2:]):
            o = o.inputs[0]
        if o.op == "transpose":
            perm = tuple(o.attrs["perm"])
            nd = len(perm)
            if nd >= 2 and perm[:-2] == tuple(range(nd - 2)) and perm[-2:] == (nd - 1, nd - 2):
                return o.inputs[0], True, None
            other = (transposes or {}).get((id(o.inputs[0]), perm[:-2] + (perm[-1], perm[-2])))
            if other is not None and perm[-2] > perm[-1]:     # of the two, the copy that keeps x's order
                return other, True, None
    return o, False, None


def _descendants(n: Tensor, users: dict) -> set:
    seen, stack = set(), [n]
    while stack:
        x = stack.pop()
        for u in users.get(id(x), ()):
            if id(u) not in seen:
                seen.add(id(u))
                stack.append(u)
    return seen


def summed_over_batch(plan: FusionPlan, m: Tensor, roles: set):
    """The sum node when m is matmul(Aᵀ, D) over one batch axis whose only reader sums
    that axis away (a weight gradient over every step of a scan, passes/loop_sink.py):
    one GEMM of depth T*N computes that sum (passes/lower/matmul.py), so the sum, not
    m, is the product an epilogue reads (W - lr * dW stored straight into W's update:
    dW is never stored). None otherwise, or when m itself is an output or update."""
    if m.op != "matmul" or id(m) not in plan.operands or id(m) in roles:
        return None
    (an, ta), (bn, tb) = plan.operands[id(m)]
    if m.ndim != 3 or not ta or tb or an.ndim != 3 or bn.ndim != 3 or an.shape[0] != bn.shape[0]:
        return None
    users = plan.users.get(id(m), [])
    if len(users) != 1:
        return None
    s = users[0]
    if s.op != "sum" or tuple(s.attrs["axes"]) != (0,) or s.attrs["keepdims"] or s.dtype != m.dtype:
        return None
    return s


def _epilogues(plan: FusionPlan, roles: set):
    """Find each matmul's epilogue set D and its frontier (see the module docstring);
    of a product summed over its batch (`summed_over_batch`), the sum's."""
    pos = {id(n): k for k, n in enumerate(plan.order)}
    claimed = set()
    for m in plan.order:
        if not OPS[m.op].takes_epilogue:
            continue
        total = summed_over_batch(plan, m, roles)
        prod = m if total is None else total
        D = _epilogue_set(plan, prod, pos, claimed)
        if not D:
            continue
        frontier = []
        for n in [prod] + [x for x in plan.order if id(x) in D]:
            outside = any(id(u) not in D for u in plan.users.get(id(n), ()))
            if outside or id(n) in roles or (n is not prod and id(n) in plan.reasons):
                frontier.append(n)
        claimed |= D
        plan.inside |= {x for x in D if not any(f is not prod and id(f) == x for f in frontier)}
        plan.epilogue[id(m)] = frontier
        for f in frontier:
            plan.owner[id(f)] = m
            if f is not prod:
                plan.reasons[id(f)] = plan.reasons.get(id(f), f"stored by the epilogue of matmul {label(m)}")
        if prod not in frontier:
            plan.reasons[id(prod)] = f"{prod.op} (product consumed only by its epilogue)"


def _epilogue_set(plan: FusionPlan, prod: Tensor, pos: dict, claimed: set) -> set:
    """Ids of the elementwise values of prod's shape computed from prod (at the same
    point) and from values that do not depend on it."""
    desc = _descendants(prod, plan.users)
    D = set()
    for n in plan.order[pos[id(prod)] + 1:]:
        if id(n) not in desc or id(n) in claimed or OPS[n.op].kind != "elementwise":
            continue
        if tuple(n.shape) != tuple(prod.shape) or id(n) in plan.reasons and "operand cast" in plan.reasons[id(n)]:
            continue
        ok = True
        for i in n.inputs:
            if i is prod or id(i) in D:
                ok = tuple(i.shape) == tuple(n.shape)
            else:
                ok = id(i) not in desc and (pos[id(i)] < pos[id(prod)] or _pure(i, plan))
            if not ok:
                break
        if ok:
            D.add(id(n))
    return D


def _pure(n: Tensor, plan: FusionPlan) -> bool:
    """Is n computed from sources only by ops that inline (so an epilogue can compute
    it wherever it runs)? Its cone is pinned: never materialised later."""
    seen, stack = [], [n]
    while stack:
        x = stack.pop()
        if is_source(x):
            continue
        if id(x) in plan.reasons or OPS[x.op].kind not in ("elementwise", "movement"):
            return False
        seen.append(x)
        stack.extend(x.inputs)
        if len(seen) > 64:
            return False
    plan.pinned |= {id(x) for x in seen}
    return True


def _cost(n: Tensor, reasons: dict, limit: int) -> int:
    """Weighted op count of n's inlined cone (stops at buffers), capped above limit."""
    seen, stack, cost = set(), [n], 0
    while stack and cost <= limit:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        cost += OPS[x.op].cost
        for i in x.inputs:
            if not is_source(i) and id(i) not in reasons:
                stack.append(i)
    return cost


def _expensive_shared(plan: FusionPlan):
    """Materialise values that several kernels would recompute at a high cost."""
    reasons, order = plan.reasons, plan.order
    in_epilogue = plan.inside  # computed once, in their epilogue
    roots_of: dict = {}
    for n in reversed(order):
        acc = set()
        for u in plan.users.get(id(n), ()):
            if id(u) in reasons:
                acc.add(id(u))
            else:
                acc |= roots_of.get(id(u), set())
            if len(acc) > 8:
                break
        roots_of[id(n)] = acc
    for n in order:
        if is_source(n) or id(n) in reasons or id(n) in in_epilogue or id(n) in plan.pinned:
            continue
        k = len(roots_of.get(id(n), ()))
        if k >= 2:
            c = _cost(n, reasons, RECOMPUTE_LIMIT)
            if c > RECOMPUTE_LIMIT:
                reasons[id(n)] = f"used by {k} kernels and costly to recompute (cost > {RECOMPUTE_LIMIT})"
