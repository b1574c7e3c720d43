"""A whole graph with one symbol per class of joined dynamic sizes (nngraph/sizes.py).

`unify(graph)` gathers every pair the graph's nodes recorded (a union-find over size
names), checks that no class holds two named sizes, and rebuilds the graph with one
symbol per class, so the textual IR and every pass see one size. The result keeps
the joins (`Graph.size_joins`): when a call's arrays disagree on a joined size,
`explain_mismatch` names the op and the user's line that joined them.
"""
from __future__ import annotations

from collections import deque

from .errors import ShapeError
from .graph import Graph
from .node import Parameter, Tensor
from .sizes import class_rank, is_anonymous
from .scan_body import Body
from .types import Dim, TensorType, TupleType

class SizeJoins:
    """What `unify` did: edges (kept size, dropped size, node that joined them, the op as the
    user called it) and, per
    placeholder of the unified graph, its shape as the user built it."""

    def __init__(self, edges: list, original: dict):
        self.edges, self.original = edges, original

    def path(self, a: str, b: str) -> list:
        """(op label, node) of the joins on a shortest chain from size a to size b."""
        adj: dict = {}
        for keep, drop, node, label in self.edges:
            adj.setdefault(keep.name, []).append((drop.name, (label, node)))
            adj.setdefault(drop.name, []).append((keep.name, (label, node)))
        prev, todo = {a: None}, deque([a])
        while todo:
            u = todo.popleft()
            for v, node in adj.get(u, []):
                if v not in prev:
                    prev[v] = (u, node)
                    todo.append(v)
        out, v = [], b
        while prev.get(v) is not None:
            v, node = prev[v]
            out.append(node)
        return out[::-1]


def _find(parent: dict, x: str) -> str:
    while parent.setdefault(x, x) != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def _classes(edges) -> dict:
    """size name -> Dim naming its class; ShapeError when a class holds two named sizes."""
    parent, dims, named = {}, {}, {}      # named: class root -> the named size in it
    for keep, drop, node, label in edges:
        for d in (keep, drop):
            dims[d.name] = d
            if not is_anonymous(d):
                named.setdefault(_find(parent, d.name), d)
        ra, rb = _find(parent, keep.name), _find(parent, drop.name)
        if ra == rb:
            continue
        na, nb = named.get(ra), named.get(rb)
        if na and nb and na != nb:
            raise ShapeError(f"sizes {na} and {nb} are both named but would be the same size: "
                             f"{label} (built at {node.where}) joined {keep} and {drop}; name one "
                             f"size for both or leave one as None")
        parent[rb] = ra
        if na or nb:
            named[ra] = na or nb
    best: dict = {}
    for name, d in dims.items():
        r = _find(parent, name)
        if r not in best or class_rank(d) < class_rank(best[r]):
            best[r] = d
    return {name: best[_find(parent, name)] for name in dims}


def _subst(v, m: dict):
    if isinstance(v, Body):
        return v.with_graph(rename(v.graph, m))
    if isinstance(v, TupleType):
        return TupleType([_subst(p, m) for p in v.parts])
    if isinstance(v, Dim):
        return m.get(v.name, v)
    if isinstance(v, tuple):
        return tuple(_subst(x, m) for x in v)
    if isinstance(v, TensorType):
        return TensorType(v.dtype, _subst(v.shape, m))
    return v


def unify(graph):
    """The graph with every class of joined sizes written as one symbol (the same graph
    when nothing was joined); the result's `size_joins` explains the joins."""
    nodes = graph.nodes()
    edges = [(k, d, n, label or n.op) for n in nodes for k, d, label in getattr(n, "joins", ())]
    if not edges:
        return graph
    m = {name: d for name, d in _classes(edges).items() if d.name != name}
    out = rename(graph, m)
    out.size_joins = SizeJoins(edges, {id(q): p.shape for p, q in zip(graph.inputs, out.inputs)})
    return out


def rename(graph, m: dict):
    """The graph with sizes renamed by m (name -> Dim), scan bodies included; nodes that
    mention none of them are kept as they are."""
    new: dict = {}
    for n in graph.nodes():
        ins = tuple(new.get(id(i), i) for i in n.inputs)
        t, attrs = _subst(n.type, m), {k: _subst(v, m) for k, v in n.attrs.items()}
        if isinstance(n, Parameter) or (t == n.type and attrs == n.attrs and all(a is b for a, b in zip(ins, n.inputs))):
            continue
        new[id(n)] = Tensor(n.op, ins, attrs, t, n.name, n.where)

    def get(x):
        return new.get(id(x), x)
    return Graph([get(p) for p in graph.inputs], [get(o) for o in graph.outputs],
                 [(p, get(v)) for p, v in graph.updates], graph.name)


def explain_mismatch(joins: SizeJoins | None, ph_a, axis_a: int, ph_b, axis_b: int) -> str:
    """Why inputs a and b must agree on these axes: the op(s) that joined their sizes."""
    if joins is None:
        return ""
    sa = joins.original.get(id(ph_a), ph_a.shape)[axis_a]
    sb = joins.original.get(id(ph_b), ph_b.shape)[axis_b]
    if not (isinstance(sa, Dim) and isinstance(sb, Dim)) or sa == sb:
        return ""
    chain = joins.path(sa.name, sb.name)
    if not chain:
        return ""
    how = ", then ".join(f"{label} (built at {n.where})" for label, n in chain)
    return f"; their sizes {sa} and {sb} were joined by {how}, which needs them equal (only a literal 1 broadcasts)"
