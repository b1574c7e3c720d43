"""A Graph: placeholders in, outputs and parameter updates out.

The DAG itself is implied by node inputs; a Graph only names its ends.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .node import Parameter


@dataclass
class Graph:
    inputs: list            # placeholder nodes, in call order
    outputs: list           # output nodes
    updates: list = field(default_factory=list)   # [(Parameter, new value node)]
    name: str = "main"

    def roots(self) -> list:
        return list(self.outputs) + [v for _, v in self.updates]

    def nodes(self) -> list:
        """Every node reachable from the outputs and updates (and the inputs), in
        topological order (inputs before users), deterministic."""
        return toposort(list(self.inputs) + [p for p, _ in self.updates] + self.roots())

    def params(self) -> list:
        """Parameters read or updated, in first-use order."""
        seen, out = set(), []
        for n in self.nodes():
            if isinstance(n, Parameter) and id(n) not in seen:
                seen.add(id(n))
                out.append(n)
        return out

    def replace(self, mapping: dict) -> "Graph":
        """The same graph with ends mapped through `mapping` (id(old) -> new)."""
        def m(n):
            return mapping.get(id(n), n)
        return Graph(list(self.inputs), [m(o) for o in self.outputs],
                     [(p, m(v)) for p, v in self.updates], self.name)


def toposort(roots) -> list:
    """Post-order DFS without recursion (graphs can be deep)."""
    order, state = [], {}
    for r in roots:
        if id(r) in state:
            continue
        stack = [(r, 0)]
        while stack:
            n, i = stack.pop()
            if i == 0:
                if state.get(id(n)) == 2:
                    continue
                state[id(n)] = 1
            if i < len(n.inputs):
                stack.append((n, i + 1))
                c = n.inputs[i]
                s = state.get(id(c))
                if s is None:
                    stack.append((c, 0))
                elif s == 1:
                    raise ValueError(f"cycle in graph at {c!r}")
            else:
                state[id(n)] = 2
                order.append(n)
    return order


def users(nodes) -> dict:
    """id(node) -> list of nodes that use it."""
    out = {id(n): [] for n in nodes}
    for n in nodes:
        for i in n.inputs:
            out.setdefault(id(i), []).append(n)
    return out
