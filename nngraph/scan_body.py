"""The body of a `scan` node: one step of the loop as a graph of its own (a region).

A `Body` wraps a `Graph` whose inputs are placeholders, in this order:

    carry_in   (n_carry)    the carry entering the step
    xs_in      (n_xs)       the step's slices of the scanned inputs (xs[t])
    closure_in (the rest)   loop-invariant values from outside: parameters, outer
                            placeholders, outer intermediate values, one placeholder each

and whose outputs are, in this order:

    carry_out  (n_carry)    the new carry, each of exactly its carry_in's type
    ys_out     (the rest)   the per-step results (stacked by the scan along a new axis 0)

A body never holds a Parameter, never reads an outer node, never has updates: all
that comes in through closure_in (the scan node's own inputs), so the outer graph's
DAG, DCE, the memory plan and the runtime see every value the loop reads. Constants
may sit inside the body.

A Body is immutable and compares structurally (`key()`: ops, attributes, types and
wiring by position, placeholder names ignored), so CSE merges two scans that compute
the same thing on the same inputs, and `extends()` tells that one body is another
with more ys appended (the forward scan that also stores residuals for its gradient,
passes/scans.py merges the two).
"""
from __future__ import annotations

from .graph import Graph, toposort
from .node import Tensor, make


class Body:
    """One loop step as a graph (see the module docstring for the layout)."""

    __slots__ = ("graph", "n_carry", "n_xs", "_key", "cache")

    def __init__(self, graph: Graph, n_carry: int, n_xs: int):
        if graph.updates:
            raise ValueError("a scan body has no parameter updates")
        if n_carry + n_xs > len(graph.inputs) or n_carry > len(graph.outputs):
            raise ValueError("scan body: fewer inputs or outputs than carries and xs")
        self.graph, self.n_carry, self.n_xs = graph, int(n_carry), int(n_xs)
        self._key = None
        self.cache = {}   # derived data (the gradient's residual plan, nngraph/scan_grad.py)

    # -- the layout ---------------------------------------------------------------
    @property
    def carry_in(self) -> list:
        return list(self.graph.inputs[:self.n_carry])

    @property
    def xs_in(self) -> list:
        return list(self.graph.inputs[self.n_carry:self.n_carry + self.n_xs])

    @property
    def closure_in(self) -> list:
        return list(self.graph.inputs[self.n_carry + self.n_xs:])

    @property
    def carry_out(self) -> list:
        return list(self.graph.outputs[:self.n_carry])

    @property
    def ys_out(self) -> list:
        return list(self.graph.outputs[self.n_carry:])

    @property
    def n_closure(self) -> int:
        return len(self.graph.inputs) - self.n_carry - self.n_xs

    @property
    def n_ys(self) -> int:
        return len(self.graph.outputs) - self.n_carry

    def nodes(self) -> list:
        """Every node of the step (inputs first), topological."""
        return self.graph.nodes()

    def with_graph(self, graph: Graph) -> "Body":
        """The same layout over a rewritten graph (a pass run inside the body)."""
        return Body(graph, self.n_carry, self.n_xs)

    def with_outputs(self, outputs) -> "Body":
        """The same inputs with other outputs (carries first)."""
        return Body(Graph(list(self.graph.inputs), list(outputs), [], self.graph.name), self.n_carry, self.n_xs)

    # -- structural identity --------------------------------------------------------
    def key(self) -> tuple:
        """Ops, attributes, types and wiring by position: equal keys compute equal steps."""
        if self._key is None:
            self._key = _structure(self.graph, len(self.graph.outputs)) + (self.n_carry, self.n_xs)
        return self._key

    def extends(self, other: "Body") -> bool:
        """True when self is `other` with ys appended (same inputs, same first outputs)."""
        if (self is other or self.n_carry != other.n_carry or self.n_xs != other.n_xs
                or len(self.graph.inputs) != len(other.graph.inputs)
                or len(self.graph.outputs) < len(other.graph.outputs)):
            return False
        n = len(other.graph.outputs)
        return (_structure(self.graph, n) == _structure(other.graph, n)
                and [p.type for p in self.graph.inputs] == [p.type for p in other.graph.inputs])

    def __hash__(self):
        return hash(self.key())

    def __eq__(self, other):
        return self is other or (isinstance(other, Body) and self.key() == other.key())

    def __repr__(self):
        return (f"<Body carries={self.n_carry} xs={self.n_xs} closure={self.n_closure} "
                f"ys={self.n_ys} nodes={len(self.nodes())}>")


def _structure(graph: Graph, n_outputs: int) -> tuple:
    """The wiring of the nodes reached from the first `n_outputs` outputs, by position."""
    outs = list(graph.outputs[:n_outputs])
    pos: dict[int, int] = {id(p): k for k, p in enumerate(graph.inputs)}
    rows = [tuple(str(p.type) for p in graph.inputs)]
    for n in toposort(outs):
        if id(n) in pos:
            continue
        pos[id(n)] = len(pos)
        rows.append((n.op, tuple(pos[id(i)] for i in n.inputs), tuple(n.attrs.items()), str(n.type)))
    rows.append(tuple(pos[id(o)] for o in outs))
    return tuple(rows)


def results(node: Tensor) -> list:
    """scan_output nodes for every result of the scan `node`, in order (final carries, then ys)."""
    return [make("scan_output", (node,), where=node.where, index=i) for i in range(len(node.type.parts))]
