"""The kernel graph's directed acyclic graph: nodes (kernel numbers), edges (which
kernel must run before which), and the three questions the lowering asks of it: is
there a path, which nodes lead to one, and a topological order that prefers the
smallest key among the nodes ready to run.

Why not networkx: importing networkx takes about 0.1 s (it imports all its
algorithms and scans the installed packages for backends), a fifth of a cold compile of
a small model, for three breadth-first searches and one Kahn's sort. networkx stays
where a real graph algorithm is needed (the report's layout, DOT export); the
answers here are the ones networkx gives (tests/passes/test_dag.py compares them).
"""
from __future__ import annotations

import heapq


class CycleError(ValueError):
    """The graph has a cycle, so it has no topological order."""


class Dag:
    """A directed graph of hashable nodes kept in insertion order, with successor
    and predecessor sets (add_edge adds missing nodes, as networkx's DiGraph does)."""

    def __init__(self):
        self._succ: dict = {}
        self._pred: dict = {}

    def add_node(self, n) -> None:
        if n not in self._succ:
            self._succ[n] = {}
            self._pred[n] = {}

    def add_nodes_from(self, nodes) -> None:
        for n in nodes:
            self.add_node(n)

    def add_edge(self, u, v) -> None:
        self.add_node(u)
        self.add_node(v)
        self._succ[u][v] = None     # dicts as ordered sets: iteration follows insertion
        self._pred[v][u] = None

    def edges(self) -> list:
        return [(u, v) for u, vs in self._succ.items() for v in vs]

    def has_path(self, source, target) -> bool:
        """Whether target is reachable from source (a node reaches itself)."""
        self._check(source)
        self._check(target)
        if source == target:
            return True
        seen, todo = set(), list(self._succ[source])
        while todo:                     # depth first, stopping at target
            n = todo.pop()
            if n == target:
                return True
            if n not in seen:
                seen.add(n)
                todo.extend(self._succ[n])
        return False

    def ancestors(self, n) -> set:
        """The nodes with a path to n, n excluded."""
        self._check(n)
        return self._reachable(n, self._pred)

    def lexicographical_topological_sort(self, key=None) -> list:
        """Kahn's algorithm taking, among the nodes whose predecessors are all placed,
        the one with the smallest key(node) (ties: insertion order); CycleError if
        there is a cycle."""
        key = key if key is not None else (lambda n: n)
        order_of = {n: i for i, n in enumerate(self._succ)}
        waiting = {n: len(p) for n, p in self._pred.items()}
        ready = [(key(n), order_of[n], n) for n, k in waiting.items() if k == 0]
        heapq.heapify(ready)
        out = []
        while ready:
            _, _, n = heapq.heappop(ready)
            out.append(n)
            for s in self._succ[n]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    heapq.heappush(ready, (key(s), order_of[s], s))
        if len(out) != len(self._succ):
            raise CycleError(f"the graph has a cycle through {[n for n, k in waiting.items() if k][:5]}")
        return out

    def _reachable(self, start, adjacency) -> set:
        seen, todo = set(), list(adjacency[start])
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(adjacency[n])
        return seen

    def _check(self, n) -> None:
        if n not in self._succ:
            raise KeyError(f"node {n!r} is not in the graph")
