"""Graph verification after every pass, so a bad rewrite is caught at the pass that made it.

Checked: no cycles (scan bodies included, recursively); every node's type re-inferred from its inputs and attributes
equals the type it carries; constants hold what their type says; every placeholder
reached is one of the graph's inputs and every parameter is a Parameter (no
dangling nodes); the inputs, the outputs' types and the parameter updates are
those of the graph before the pass.
"""
from __future__ import annotations

from nngraph.errors import VerifyError
from nngraph.graph import Graph, toposort
from nngraph.node import OPS, Parameter, Tensor
from nngraph.types import TensorType, as_dtype


def _verify_body(n, pass_name: str) -> None:
    """A scan's body is a graph of its own: checked the same way, and it holds no parameter."""
    body = n.attrs["body"]
    for m in body.nodes():
        if isinstance(m, Parameter):
            raise VerifyError(f"after pass '{pass_name}': the body of the scan at {n.where} holds parameter "
                              f"{m.name}; a loop reads parameters through its closed-over inputs")
    verify(body.graph, f"{pass_name}, in the body of the scan at {n.where}")


def verify(graph: Graph, pass_name: str = "?", before: Graph | None = None) -> None:
    """Raise VerifyError naming `pass_name` when `graph` is ill-formed or when it no
    longer has the interface (inputs, output types, updates) of `before`."""
    def fail(msg):
        raise VerifyError(f"after pass '{pass_name}': {msg}")

    for r in graph.roots():
        if not isinstance(r, Tensor):
            fail(f"a graph end is not a tensor: {r!r}")
    try:
        nodes = toposort(list(graph.inputs) + graph.roots())
    except ValueError as e:
        fail(str(e))
    inputs = {id(x) for x in graph.inputs}
    for n in nodes:
        if not isinstance(n, Tensor):
            fail(f"a node input is not a tensor: {n!r}")
        if n.op not in OPS:
            fail(f"unknown op {n.op!r} at {n.where}")
        if n.op == "placeholder":
            if id(n) not in inputs:
                fail(f"placeholder '{n.name}' ({n.type}, made at {n.where}) is used but is not a graph input")
            continue
        if n.op == "parameter":
            if not isinstance(n, Parameter):
                fail(f"a 'parameter' node that is not a Parameter at {n.where}")
            continue
        if n.op == "constant":
            a = n.attrs["value"].array
            if TensorType(as_dtype(a.dtype), a.shape) != n.type:
                fail(f"constant at {n.where} holds {a.dtype}{list(a.shape)} but is typed {n.type}")
            continue
        for i in n.inputs:
            if not isinstance(i, Tensor):
                fail(f"{n.op} at {n.where} has an input that is not a tensor: {i!r}")
        try:
            t = OPS[n.op].infer(n.inputs, n.attrs)
        except Exception as e:  # noqa: BLE001 - any failure to re-infer is the finding
            fail(f"{n.op} at {n.where} no longer type-checks: {e}")
        if t != n.type:
            fail(f"{n.op} at {n.where} is typed {n.type} but its inputs give {t}")
        if n.op == "scan":
            _verify_body(n, pass_name)
    ups = [p for p, _ in graph.updates]
    for p, v in graph.updates:
        if not isinstance(p, Parameter):
            fail(f"update of {p!r}, which is not a parameter")
        if v.type != p.type:
            fail(f"update of parameter {p.name}: {p.type} with a value of type {v.type} (built at {v.where})")
    if len({id(p) for p in ups}) != len(ups):
        fail("a parameter is updated twice")
    if before is not None:
        if len(graph.inputs) != len(before.inputs) or any(a is not b for a, b in zip(graph.inputs, before.inputs)):
            fail("the graph inputs changed (placeholders must keep their identity and order)")
        if len(graph.outputs) != len(before.outputs):
            fail(f"{len(before.outputs)} outputs became {len(graph.outputs)}")
        for k, (a, b) in enumerate(zip(graph.outputs, before.outputs)):
            if a.type != b.type:
                fail(f"output {k} was {b.type}, now {a.type}")
        old = [p for p, _ in before.updates]
        if len(old) != len(ups) or any(a is not b for a, b in zip(old, ups)):
            fail("the parameter updates changed (same parameters, same order, expected)")
