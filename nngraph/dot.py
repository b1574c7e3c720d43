"""Graphviz DOT source of a graph, built with networkx."""
from __future__ import annotations

import networkx as nx

from .graph import Graph, toposort
from .node import Tensor


def to_graph(x) -> nx.DiGraph:
    """A networkx DiGraph: one vertex per node (label, op, type), edges input -> user."""
    roots = x.roots() if isinstance(x, Graph) else ([x] if isinstance(x, Tensor) else list(x))
    g = nx.DiGraph()
    for i, n in enumerate(toposort(roots)):
        label = n.name or n.op
        if n.op == "constant":
            a = n.attrs["value"].array
            label = f"{a.item():g}" if a.size == 1 else f"const {list(a.shape)}"
        shape = {"placeholder": "box", "parameter": "box3d", "constant": "plaintext"}.get(n.op, "ellipse")
        g.add_node(id(n), label=f"{label}\\n{n.type}", shape=shape, op=n.op)
        for inp in n.inputs:
            g.add_edge(id(inp), id(n))
    return g


def to_dot(x) -> str:
    """DOT source text (render with `dot -Tsvg`)."""
    g = to_graph(x)
    order = {v: i for i, v in enumerate(g.nodes)}
    lines = ["digraph nngraph {", "  rankdir=TB;", '  node [fontname="monospace"];']
    for v, d in g.nodes(data=True):
        lines.append(f'  n{order[v]} [label="{d["label"]}", shape={d["shape"]}];')
    for a, b in g.edges:
        lines.append(f"  n{order[a]} -> n{order[b]};")
    lines.append("}")
    return "\n".join(lines) + "\n"
