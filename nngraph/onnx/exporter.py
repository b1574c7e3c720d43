"""ng.onnx.export: an nngraph graph (a compiled Function, or a built nn model's
inference graph) as an ONNX model that onnxruntime runs with the same results.

Every graph op maps to one or a few ONNX nodes (EXPORTERS, one small function per
op); an op without an entry (gradient primitives, random numbers) is refused by
name. Dynamic sizes become named dims (dim_param) and, where an op needs them as
values (reshape, broadcast), Shape -> Gather of the input that carries them.
"""
from __future__ import annotations

import numpy as np

from ..graph import Graph, toposort
from ..types import Dim
from . import export_rules  # noqa: F401  (registers mod, fmod, trunc_div and the bitwise ops)
from .dtypes import NNGRAPH_TO_ONNX
from .export_ops import EXPORTERS
from .registry import OnnxError

DEFAULT_OPSET = 17


class Emitter:
    """Builds the ONNX graph: fresh names, initializers, nodes, and the symbolic
    sizes' values (each from the first input axis that carries it)."""

    def __init__(self, opset: int):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper, self.opset = helper, numpy_helper, opset
        self.nodes, self.initializers, self.names, self.dim_sources = [], [], {}, {}
        self._count = 0

    def fresh(self, hint: str = "t") -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def node(self, op_type: str, inputs, n_out: int = 1, **attrs):
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, array, hint: str = "c") -> str:
        name = self.fresh(hint)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(array), name))
        return name

    def size(self, s, scalar: bool = False) -> str:
        """A 1-d int64 tensor holding one size (a 0-d one with `scalar`)."""
        index = (lambda v: np.asarray(v, np.int64)) if scalar else (lambda v: np.asarray([v], np.int64))
        if isinstance(s, int):
            return self.const(index(s), "size")
        if s.name not in self.dim_sources:
            raise OnnxError(f"export: the dynamic size {s} is carried by no graph input")
        src, axis = self.dim_sources[s.name]
        shape = self.node("Shape", [src])
        return self.node("Gather", [shape, self.const(index(axis), "axis")], axis=0)

    def shape(self, sizes) -> str:
        """A 1-d int64 tensor holding a shape whose sizes may be dynamic."""
        if all(isinstance(s, int) for s in sizes):
            return self.const(np.asarray(sizes, np.int64).reshape(-1), "shape")
        return self.node("Concat", [self.size(s) for s in sizes], axis=0)


def _graph_of(obj) -> Graph:
    if isinstance(obj, Graph):
        return obj
    if hasattr(obj, "graph") and isinstance(obj.graph, Graph):
        return obj.graph
    if hasattr(obj, "compiled"):  # an nn model: its inference function
        return obj.compiled("predict").graph
    raise TypeError(f"ng.onnx.export takes a compiled function or an nn model, got {type(obj).__name__}")


def export(obj, path=None, opset=None):
    """Write `obj` (a compiled Function or a built nn model) as ONNX to `path`
    (when given) and return the ModelProto."""
    from onnx import checker, helper
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not 13 <= opset <= 21:
        raise ValueError(f"ng.onnx.export writes opsets 13..21, got {opset}")
    graph = _graph_of(obj)
    if any(not p._state.get("auto_increment") for p, _ in graph.updates):  # (the dropout counter is no update)
        raise OnnxError("export: the function updates parameters (a training step); export an inference function")
    em = Emitter(opset)
    inputs = _inputs(em, graph)
    for n in toposort(list(graph.outputs)):
        if id(n) in em.names:
            continue
        _emit(em, n)
    outputs = []
    for k, o in enumerate(graph.outputs):
        name = f"output_{k}"
        em.nodes.append(helper.make_node("Identity", [em.names[id(o)]], [name], name=name))
        outputs.append(_value_info(name, o))
    opsets = [helper.make_opsetid("", opset)]
    # the oldest IR version that carries this opset, not the onnx package's newest: a
    # runtime older than the package (onnxruntime < 1.20 reads IR <= 13) still loads it
    model = helper.make_model(helper.make_graph(em.nodes, graph.name, inputs, outputs, em.initializers),
                              opset_imports=opsets, producer_name="nngraph",
                              ir_version=helper.find_min_ir_version_for(opsets))
    checker.check_model(model)
    if path is not None:
        import onnx
        onnx.save(model, path)
    return model


def _value_info(name, t):
    from onnx import helper
    dims = [s.name if isinstance(s, Dim) else int(s) for s in t.shape]
    return helper.make_tensor_value_info(name, NNGRAPH_TO_ONNX[t.dtype], dims)


def _inputs(em, graph) -> list:
    out = []
    for k, ph in enumerate(graph.inputs):
        name = ph.name or f"input_{k}"
        em.names[id(ph)] = name
        out.append(_value_info(name, ph))
        for axis, s in enumerate(ph.shape):
            if isinstance(s, Dim):
                em.dim_sources.setdefault(s.name, (name, axis))
    return out


def _emit(em, n):
    if n.op == "parameter":
        em.names[id(n)] = em.const(n.value, (n.name or "param").replace("/", "_"))
        return
    if n.op == "constant":
        em.names[id(n)] = em.const(n.attrs["value"].array, "const")
        return
    rule = EXPORTERS.get(n.op)
    if rule is None:
        raise OnnxError(f"export: op {n.op} (built at {n.where}) has no ONNX form; exportable ops: "
                        f"{', '.join(sorted(EXPORTERS))}")
    em.names[id(n)] = rule(em, n, [em.names[id(i)] for i in n.inputs])
