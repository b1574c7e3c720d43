"""Dead-code elimination, and dropping stop_gradient after autodiff.

The DAG is implied by the graph's outputs and updates: a node no root reaches
is not part of the graph, so DCE is the rebuild from the roots (after it, only
reachable nodes exist; the log's node counts show what earlier rewrites left
behind). Placeholders stay, used or not: they are the call signature.

`drop_stop_gradient` removes an identity that does no work: gradients are built
before the pipeline runs, so `stop_gradient` has nothing left to stop and only
hides its operand from CSE and the stabilising patterns.
"""
from __future__ import annotations

from nngraph.graph import Graph

from .log import Rewrites
from .rewrite import map_graph, rebuild


def dce(graph: Graph, counts: Rewrites | None = None) -> Graph:
    """The graph as reachable from its outputs and updates (inputs kept)."""
    return map_graph(graph, rebuild)


def drop_stop_gradient(graph: Graph, counts: Rewrites | None = None) -> Graph:
    """stop_gradient(x) -> x."""
    counts = Rewrites() if counts is None else counts

    def visit(n, ins):
        if n.op == "stop_gradient":
            counts.fired("stop_gradient")
            return ins[0]
        return rebuild(n, ins)

    return map_graph(graph, visit)
