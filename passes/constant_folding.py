"""Constant folding: a node whose inputs are all constants becomes a constant.

The value comes from the op's own NumPy reference (the oracle), so folding means
exactly what running would. Bounded, so the graph does not fill with literals:

- results of more than MAX_ELEMENTS elements stay computed;
- random ops are never folded (their value depends on the step counter), nor
  all_reduce (its value depends on the other processes);
- a loop (scan) is never folded: it has several results, and its cost is in its steps;
- broadcast_to is never folded: a broadcast of a scalar costs nothing in a fused
  loop, the big constant it would become costs memory and bandwidth;
- results that are not finite stay computed, so check_numerics still names the
  op that made the inf or NaN;
- symbolic shapes cannot be folded (the size is known only at call time).
"""
from __future__ import annotations

import numpy as np

from nngraph.graph import Graph
from nngraph.interpreter import Ctx
from nngraph.node import OPS, ConstValue, make
from nngraph.types import Dim, np_dtype

from .log import Rewrites
from .rewrite import map_graph, rebuild

MAX_ELEMENTS = 4096
NEVER_FOLD = frozenset({"broadcast_to", "stop_gradient", "all_reduce", "scan", "scan_output"})


def fold_value(n, inputs) -> np.ndarray | None:
    """The value of `n` on constant `inputs`, or None when it must not be folded."""
    op = OPS[n.op]
    if (n.op in NEVER_FOLD or op.kind in ("source", "random") or op.reference is None
            or not n.type.is_static or not all(i.op == "constant" for i in inputs)
            or _mentions_symbol(tuple(n.attrs.values()))):
        return None
    if int(np.prod(n.shape, dtype=np.int64)) > MAX_ELEMENTS:
        return None
    args = [i.attrs["value"].array for i in inputs]
    node = rebuild(n, inputs)
    with np.errstate(all="ignore"):
        out = np.asarray(op.reference(Ctx(node, {}), *args)).astype(np_dtype(n.dtype), copy=False)
    if out.shape != tuple(n.shape):
        return None
    if out.dtype.kind in "fc" and not np.all(np.isfinite(out)):
        return None
    return out


def _mentions_symbol(v) -> bool:
    """True when an attribute value holds a symbolic size (numel of N, iota of [N,10])."""
    if isinstance(v, Dim):
        return True
    return isinstance(v, tuple) and any(_mentions_symbol(x) for x in v)


def constant_folding(graph: Graph, counts: Rewrites | None = None) -> Graph:
    """Replace computable-now nodes by constants (see the module docstring for the bounds)."""
    counts = Rewrites() if counts is None else counts

    def visit(n, ins):
        if n.op == "constant" or not n.inputs and n.op in ("placeholder", "parameter"):
            return n
        v = fold_value(n, ins)
        if v is None:
            return rebuild(n, ins)
        counts.fired(f"fold:{n.op}")
        return make("constant", (), where=n.where, canonical=False, value=ConstValue(v))

    return map_graph(graph, visit)
