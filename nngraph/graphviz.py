"""Graphviz DOT source of a graph, built with networkx.

One vertex per node (label: name or op, then the type), one edge per operand
(a node that uses the same input twice, as x*x, has two edges, labelled by
operand position when the op has several), dashed edges from an update's value
to its parameter, outputs drawn with a double border.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .graph import Graph, toposort

if TYPE_CHECKING:
    import networkx as nx
from .node import Tensor


def _ends(x):
    if isinstance(x, Graph):
        return x.roots(), list(x.outputs), list(x.updates), list(x.inputs)
    if isinstance(getattr(x, "graph", None), Graph):  # a compiled Function
        return _ends(x.graph)
    outs = [x] if isinstance(x, Tensor) else list(x)
    return outs, outs, [], []


def _label(n: Tensor) -> str:
    if n.op == "constant":
        a = n.attrs["value"].array
        head = (f"{a.item():g}" if a.dtype.kind == "f" else str(a.item())) if a.size == 1 else "constant"
    else:
        head = f"{n.name}: {n.op}" if n.name and n.op not in ("placeholder", "parameter") else (n.name or n.op)
    return f"{head}\n{n.type}"


def to_graph(x) -> nx.MultiDiGraph:
    """A networkx MultiDiGraph: vertices are id(node) with label, op, type, where;
    edges input -> user with `operand` (its position) or `update=True`."""
    roots, outputs, updates, inputs = _ends(x)
    out_ids = {id(o) for o in outputs}
    import networkx as nx       # on use: `import nngraph` (and a compile-cache hit) need not load it
    g = nx.MultiDiGraph()
    for n in toposort(list(inputs) + [p for p, _ in updates] + list(roots)):
        g.add_node(id(n), label=_label(n), op=n.op, type=str(n.type), where=n.where,
                   output=id(n) in out_ids)
        for k, inp in enumerate(n.inputs):
            g.add_edge(id(inp), id(n), operand=k, arity=len(n.inputs))
    for p, v in updates:
        g.add_edge(id(v), id(p), update=True)
    return g


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_SHAPES = {"placeholder": "box", "parameter": "box3d", "constant": "plaintext"}


def to_dot(x) -> str:
    """DOT source text of a graph, tensors or a compiled Function (render with `dot -Tsvg`)."""
    g = to_graph(x)
    order = {v: i for i, v in enumerate(g.nodes)}
    lines = ["digraph nngraph {", "  rankdir=TB;", '  node [fontname="monospace"];']
    for v, d in g.nodes(data=True):
        attrs = [f"label={_quote(d['label'])}", f"shape={_SHAPES.get(d['op'], 'ellipse')}",
                 f"tooltip={_quote(d['where'])}"]
        if d["output"]:
            attrs.append("peripheries=2")
        lines.append(f"  n{order[v]} [{', '.join(attrs)}];")
    for a, b, d in g.edges(data=True):
        if d.get("update"):
            extra = ' [style=dashed, label="update"]'
        elif d["arity"] > 1:
            extra = f' [label="{d["operand"]}"]'
        else:
            extra = ""
        lines.append(f"  n{order[a]} -> n{order[b]}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n"
