"""Common-subexpression elimination: one node per distinct computation.

Two nodes are the same computation when they have the same op, the same inputs
(after merging) and equal attributes; constants are equal by dtype, shape and
bytes (their value is an attribute). Inputs of commutative ops (add, mul,
maximum, minimum, equal, not_equal, logical_and, logical_or) are compared as
an unordered pair. Placeholders and parameters keep their identity, and random
ops are never merged (two dropout masks are two draws). The gradient graph
repeats forward values (each vjp rebuilds what it needs); after CSE each is
computed once. The first node in topological order is kept, with its location.
The log counts merges per op as "merge:OP".
"""
from __future__ import annotations

from nngraph.graph import Graph
from nngraph.node import OPS

from .log import Rewrites
from .rewrite import map_graph, rebuild

COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum", "equal", "not_equal", "logical_and", "logical_or"})


def cse_key(n, inputs) -> tuple | None:
    """The structural identity of `n` on (already merged) `inputs`; None when it must stay unique."""
    if n.op in ("placeholder", "parameter") or OPS[n.op].kind == "random":
        return None
    ids = tuple(id(i) for i in inputs)
    if n.op in COMMUTATIVE:
        ids = tuple(sorted(ids))
    try:
        key = (n.op, ids, tuple(n.attrs.items()))
        hash(key)
    except TypeError:  # an unhashable attribute: leave the node alone
        return None
    return key


def cse(graph: Graph, counts: Rewrites | None = None) -> Graph:
    """Merge structurally equal nodes."""
    counts = Rewrites() if counts is None else counts
    seen: dict[tuple, object] = {}

    def visit(n, ins):
        key = cse_key(n, ins)
        if key is None:
            return rebuild(n, ins)
        hit = seen.get(key)
        if hit is not None and hit.type == n.type:
            counts.fired(f"merge:{n.op}")
            return hit
        m = rebuild(n, ins)
        seen[key] = m
        return m

    return map_graph(graph, visit)
