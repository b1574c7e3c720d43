"""Unifying dynamic sizes, as TensorFlow 1 and Theano users expect of `None`.

Every `None` in a placeholder's shape is a fresh anonymous size (`_0`, `_1`, ...).
When an op needs two sizes to be equal (an elementwise op, a matmul's inner sizes,
a loss between predictions and targets) and they are two different symbols of
which at least one is anonymous, `join` takes them to be the same size: the node
is built with one of them (a named size wins over an anonymous one, an older
anonymous one over a younger) and `make` records the pair on the node
(`Tensor.joins`). Two different named sizes are never joined (the user said they
may differ), nor is a symbol joined with a number: only a literal 1 broadcasts.

`unify(graph)` gathers every recorded pair (a union-find over size names), checks
that no class holds two named sizes, and rebuilds the graph with one symbol per
class, so the textual IR and every pass see one size. The graph keeps the joins
(`Graph.size_joins`): when a call's arrays disagree on a joined size,
`explain_mismatch` names the op and the user's line that joined them.
"""
from __future__ import annotations

import re
import threading
from collections import deque

from .errors import ShapeError
from .types import Dim, TensorType

_ANON = re.compile(r"_\d+")
_state = threading.local()


def is_anonymous(d: Dim) -> bool:
    return bool(_ANON.fullmatch(d.name))


def _rank(d: Dim) -> tuple:
    """Which of two joined sizes names the class: named first, then the oldest anonymous."""
    return (1, int(d.name[1:]), "") if is_anonymous(d) else (0, 0, d.name)


def can_join(a, b) -> bool:
    return a == b or (isinstance(a, Dim) and isinstance(b, Dim) and (is_anonymous(a) or is_anonymous(b)))


def same_shape(a, b) -> bool:
    """Two shapes an op needs equal: same rank, each axis equal or joinable (the op that
    then combines them records the join)."""
    return len(a) == len(b) and all(can_join(s, t) for s, t in zip(a, b))


def join(a, b):
    """The one size that a and b are when an op needs them equal, or None when they
    cannot be (two numbers, a number and a symbol, two named symbols that differ).
    A join of two symbols is recorded on the node being built."""
    if a == b:
        return a
    if not can_join(a, b):
        return None
    keep, drop = sorted((a, b), key=_rank)
    stack = getattr(_state, "stack", None)
    if stack:
        labels = getattr(_state, "labels", None)
        stack[-1].append((keep, drop, labels[0] if labels else None))
    return keep


class joined_by:
    """Within it, joins are reported as made by the user-level function `name` (e.g.
    cross_entropy) rather than by the primitive inside it that joined them."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        if not hasattr(_state, "labels"):
            _state.labels = []
        _state.labels.append(self.name)

    def __exit__(self, *exc):
        _state.labels.pop()
        return False


class collecting:
    """Context of `make`: the joins made while one node's type is inferred."""

    def __enter__(self):
        if not hasattr(_state, "stack"):
            _state.stack = []
        self.joins = []
        _state.stack.append(self.joins)
        return self.joins

    def __exit__(self, *exc):
        _state.stack.pop()
        return False


def reports_joins(fn):
    """Decorator: joins made inside `fn` are reported under its name (see joined_by)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with joined_by(fn.__name__):
            return fn(*args, **kwargs)
    return wrapper


# ----------------------------------------------------------------------------- whole graphs


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
        if r not in best or _rank(d) < _rank(best[r]):
            best[r] = d
    return {name: best[_find(parent, name)] for name in dims}


def _subst(v, m: dict):
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
    from .graph import Graph
    from .node import Parameter, Tensor
    nodes = graph.nodes()
    edges = [(k, d, n, label or n.op) for n in nodes for k, d, label in getattr(n, "joins", ())]
    if not edges:
        return graph
    m = {name: d for name, d in _classes(edges).items() if d.name != name}
    new: dict = {}
    for n in nodes:
        ins = tuple(new.get(id(i), i) for i in n.inputs)
        t, attrs = _subst(n.type, m), {k: _subst(v, m) for k, v in n.attrs.items()}
        if isinstance(n, Parameter) or (t == n.type and attrs == n.attrs and all(a is b for a, b in zip(ins, n.inputs))):
            continue
        new[id(n)] = Tensor(n.op, ins, attrs, t, n.name, n.where)

    def get(x):
        return new.get(id(x), x)
    out = Graph([get(p) for p in graph.inputs], [get(o) for o in graph.outputs],
                [(p, get(v)) for p, v in graph.updates], graph.name)
    out.size_joins = SizeJoins(edges, {id(get(p)): p.shape for p in graph.inputs})
    return out


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
