"""The one driver for local rewrites: small pattern functions applied to a fixed point.

A rule is a function `rule(node) -> replacement or None` that looks at one node
(and its inputs) and never at its users. The driver rebuilds the graph in
topological order: each node is remade on its rewritten inputs, then the rules
are tried on it, first match wins, again and again until none fires; the sweep
repeats until a whole sweep fires nothing (rules may build new nodes whose own
inputs are only simplified by the next sweep). A replacement must have exactly
the type of the node it replaces; the driver checks that, so a bad rule is
named at once. Parameters, placeholders and constants keep their identity.
"""
from __future__ import annotations

from typing import Callable, Iterable

from nngraph.errors import VerifyError
from nngraph.graph import Graph, toposort
from nngraph.node import Tensor, make

from .log import Rewrites

MAX_SWEEPS = 20
MAX_FIRINGS_PER_NODE = 64

Rule = Callable[[Tensor], "Tensor | None"]


def rebuild(n: Tensor, inputs) -> Tensor:
    """`n` on new inputs (the same node when they are the same), keeping its place in the user's code."""
    inputs = tuple(inputs)
    if all(a is b for a, b in zip(inputs, n.inputs)):
        return n
    return make(n.op, inputs, name=n.name, where=n.where, canonical=False, **n.attrs)


def map_graph(graph: Graph, fn: Callable[[Tensor, tuple], Tensor]) -> Graph:
    """Rebuild `graph` bottom-up: `fn(node, new_inputs)` gives each node's replacement."""
    new: dict[int, Tensor] = {}
    for n in toposort(list(graph.inputs) + graph.roots()):
        new[id(n)] = fn(n, tuple(new[id(i)] for i in n.inputs))
    return Graph(list(graph.inputs), [new[id(o)] for o in graph.outputs],
                 [(p, new[id(v)]) for p, v in graph.updates], graph.name)


def apply_rules(node: Tensor, rules: Iterable[Rule], counts: Rewrites) -> tuple[Tensor, int]:
    """Try `rules` on `node` until none fires; returns (result, firings)."""
    rules = list(rules)
    fired = 0
    while fired < MAX_FIRINGS_PER_NODE:
        for rule in rules:
            r = rule(node)
            if r is None or r is node:
                continue
            if r.type != node.type:
                raise VerifyError(f"rewrite '{rule.__name__}' replaced {node.op}: {node.type} (built at "
                                  f"{node.where}) by {r.op}: {r.type}; a rewrite must keep the type")
            counts.fired(rule.__name__)
            node, fired = r, fired + 1
            break
        else:
            return node, fired
    counts.fired("limit:firings_per_node")  # rules that undo each other; the log shows it
    return node, fired


def rewrite(graph: Graph, rules: Iterable[Rule], counts: Rewrites | None = None) -> Graph:
    """Apply `rules` to every node of `graph` until a whole sweep fires none."""
    rules = list(rules)
    counts = Rewrites() if counts is None else counts
    for _ in range(MAX_SWEEPS):
        total = 0

        def visit(n, ins):
            nonlocal total
            if not n.inputs and n.op in ("placeholder", "parameter", "constant"):
                return n
            m, k = apply_rules(rebuild(n, ins), rules, counts)
            total += k
            return m

        graph = map_graph(graph, visit)
        if total == 0:
            break
    else:
        counts.fired("limit:sweeps")
    return graph
