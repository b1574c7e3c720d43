"""Graph passes and loops (the `scan` node, nngraph/ops/scan.py).

- `in_bodies(pass)`: the pass run inside every scan body (innermost first), then on
  the graph itself. The pipeline (passes/pipeline.py) runs every pass this way, so
  CSE, constant folding, simplification and stabilisation work inside loops too.
  A body keeps its interface: its placeholders, the number and types of its results.
- `merge_scan_twins`: `ng.grad` of a scan builds a twin of the forward scan that also
  stores the residuals its backward reads (the same inputs and the same body with ys
  appended, nngraph/scan_grad.py). The twin replaces the plain scan, so the forward
  loop runs once. The log counts "merge:scan_twin".
"""
from __future__ import annotations

from nngraph.graph import Graph
from nngraph.node import make

from .log import Rewrites
from .rewrite import map_graph, rebuild


def in_bodies(pass_fn):
    """`pass_fn` applied to each scan body, then to the graph."""
    def run(graph: Graph, counts: Rewrites | None = None) -> Graph:
        counts = Rewrites() if counts is None else counts
        graph = map_graph(graph, lambda n, ins: _with_body(n, ins, run, counts))
        return pass_fn(graph, counts)
    run.__name__ = getattr(pass_fn, "__name__", "pass")
    return run


def _with_body(n, ins, run, counts):
    if n.op != "scan":
        return rebuild(n, ins)
    body = n.attrs["body"]
    new = run(body.graph, counts)
    if all(a is b for a, b in zip(new.outputs, body.graph.outputs)):
        return rebuild(n, ins)
    attrs = dict(n.attrs, body=body.with_graph(new))
    return make("scan", ins, name=n.name, where=n.where, canonical=False, **attrs)


def merge_scan_twins(graph: Graph, counts: Rewrites | None = None) -> Graph:
    """Read every result of a scan from its largest twin (module docstring)."""
    counts = Rewrites() if counts is None else counts
    scans = [n for n in graph.nodes() if n.op == "scan"]
    groups: dict = {}
    for s in scans:
        groups.setdefault(_signature(s), []).append(s)
    target = {}
    for group in groups.values():
        for s in group:
            best = s
            for t in group:
                if t is not best and t.attrs["body"].extends(best.attrs["body"]):
                    best = t
            if best is not s:
                target[id(s)] = best
    if not target:
        return graph
    built: dict = {}

    def visit(n, ins):
        t = target.get(id(n))
        while t is not None and id(t) in target:
            t = target[id(t)]
        if t is None:
            if id(n) not in built:
                built[id(n)] = rebuild(n, ins)
            return built[id(n)]
        counts.fired("merge:scan_twin")
        if id(t) not in built:
            built[id(t)] = rebuild(t, ins)
        return built[id(t)]
    return map_graph(graph, visit)


def _signature(s) -> tuple:
    return (tuple(id(i) for i in s.inputs), s.attrs["length"], s.attrs["reverse"])
