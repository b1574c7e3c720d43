"""ng.onnx.load: an ONNX model becomes an nngraph graph.

Initializers become parameters (float ones trainable, integer ones constants),
graph inputs become placeholders (symbolic dims become dynamic sizes), and each
node is converted by its registered converter with the ONNX node name as the
source location of everything it builds. A node whose inputs are all known at
import is evaluated at import (constant folding) and never reaches the graph;
a Conv followed by an inference BatchNormalization is folded into one Conv.
"""
from __future__ import annotations

from collections import ChainMap

import numpy as np

from ..api import parameter, placeholder
from ..errors import NNGraphError
from ..graph import Graph
from ..interpreter import evaluate
from ..node import Tensor
from ..ops import elementwise as ew
from ..source_location import located_at
from ..types import Dim
from . import bn_fold
from .imported import Imported
from .registry import Ctx, NotKnownAtImport, OnnxError, SymShape, find_converter
from .tensors import identifier, to_array
from .validate import check_declared, read_model

FROZEN_MIN_ELEMENTS = 256  # folded arrays this large are kept as frozen parameters, not IR literals


def load(model, fold_batchnorm: bool = True, known: dict | None = None) -> Imported:
    """Import an ONNX model (a path or a ModelProto); see docs/onnx.md. `known` maps
    graph input names to arrays: those inputs are bound at import (not placeholders)."""
    model, opset = read_model(model)
    return _Importer(model, opset, fold_batchnorm, known or {}).run()


class _Importer:
    """Imports one graph: the model's, or (with `parent`) a subgraph of a Loop, Scan or
    If node, which sees the values of the scopes around it and shares their parameters."""

    def __init__(self, model, opset: int, fold_batchnorm: bool, known: dict, graph=None, parent=None):
        self.model, self.opset, self.known = model, opset, known
        self.graph = model.graph if graph is None else graph
        self.fold_batchnorm, self.parent = fold_batchnorm, parent
        self.values = ChainMap({}, parent.values) if parent is not None else {}
        self.params: dict = parent.params if parent is not None else {}
        self.frozen: dict = parent.frozen if parent is not None else {}
        self.names: set = parent.names if parent is not None else set()
        self.declared = {vi.name: vi for vi in list(self.graph.value_info) + list(self.graph.output)}

    def subgraph(self, graph, bound: list, describe: str, opset: int | None = None) -> list:
        """The output values of subgraph `graph` with its inputs bound to `bound` (values
        as converters see them: Tensor, ndarray or SymShape); `describe` names the node
        that holds it. Its nodes may read any value of the scopes around it; they are
        converted at `opset` (default: the model's)."""
        if len(bound) != len(graph.input):
            raise OnnxError(f"{describe}: its body {graph.name!r} takes {len(graph.input)} inputs, "
                            f"the node gives it {len(bound)}")
        sub = _Importer(self.model, opset or self.opset, False, self.known, graph, self)
        sub._initializers()
        for vi, v in zip(graph.input, bound):
            sub.values[vi.name] = v
        sub._nodes()
        outs = []
        for vi in graph.output:
            if vi.name not in sub.values:
                raise OnnxError(f"{describe}: output {vi.name!r} of its body {graph.name!r} is computed by no node")
            v = sub.values[vi.name]
            if isinstance(v, Tensor):
                check_declared(vi, v, f"{describe}: output {vi.name!r} of its body {graph.name!r}")
            outs.append(v)
        return outs

    def run(self) -> Imported:
        self._initializers()
        inputs = self._inputs()
        self._nodes()
        outputs = [self._output(o) for o in self.graph.output]
        used = {id(p) for p in Graph(inputs, outputs).params()}
        params = {name: p for name, p in self.params.items() if id(p) in used}
        return Imported(inputs, outputs, params, [o.name for o in self.graph.output], self.opset, self.model,
                        set(self.known))

    # ------------------------------------------------------------------ ends

    def _initializers(self):
        """Float initializers become parameters, the rest constants. A body imported more
        than once (each iteration of an unrolled Loop, a Scan tried before unrolling) reuses
        the parameters its first import made: one trainable weight, not one per copy (ONNX
        names are unique across a model's nested graphs, so the name identifies it)."""
        for init in self.graph.initializer:
            if init.name in self.params:
                self.values[init.name] = self.params[init.name]
                continue
            arr = to_array(init, f"initializer {init.name!r}", OnnxError)
            if arr.dtype.kind == "f":
                p = parameter(arr, name=init.name)
                self.values[init.name] = self.params[init.name] = p
            else:
                self.values[init.name] = arr

    def _inputs(self) -> list:
        from .dtypes import to_nngraph
        out = []
        for vi in self.graph.input:
            if vi.name in self.values:  # an initializer listed as an input (IR < 4): a default
                continue
            if vi.name in self.known:
                self.values[vi.name] = np.asarray(self.known[vi.name])
                continue
            tt = vi.type.tensor_type
            what = f"graph input {vi.name!r}"
            if not vi.type.HasField("tensor_type"):
                raise OnnxError(f"{what}: only tensor inputs are supported (got {vi.type.WhichOneof('value')})")
            dtype = to_nngraph(tt.elem_type, what, OnnxError)
            if not tt.HasField("shape"):
                raise OnnxError(f"{what}: the model gives no shape (rank) for it")
            shape = [d.dim_value if d.HasField("dim_value") else
                     (Dim(identifier(d.dim_param, set())) if d.dim_param else None) for d in tt.shape.dim]
            with located_at(f"{vi.name} (graph input)"):
                ph = placeholder(shape, dtype, name=identifier(vi.name, self.names))
            self.values[vi.name] = ph
            out.append(ph)
        return out

    def _output(self, vi):
        if vi.name not in self.values:
            raise OnnxError(f"graph output {vi.name!r} is computed by no node")
        v = self.values[vi.name]
        with located_at(f"{vi.name} (graph output)"):
            t = self._tensor(v, fold=True) if not isinstance(v, Tensor) else v
        check_declared(vi, t, f"graph output {vi.name!r}")
        return t

    def _tensor(self, v, fold: bool):
        """A value as a graph tensor: big known arrays become frozen parameters."""
        if isinstance(v, Tensor):
            return v
        if isinstance(v, SymShape):
            raise OnnxError(f"a shape with dynamic sizes {v.sizes} is used as data")
        v = np.asarray(v)
        if fold or v.size < FROZEN_MIN_ELEMENTS:
            return ew.constant(v)
        key = id(v)
        if key not in self.frozen:
            self.frozen[key] = (v, parameter(v, name=f"const{len(self.frozen)}", trainable=False))
        return self.frozen[key][1]

    # ------------------------------------------------------------------ nodes

    def _nodes(self):
        nodes = list(self.graph.node)
        uses: dict = {}
        for n in nodes:
            for i in n.input:
                uses[i] = uses.get(i, 0) + 1
        outs = {o.name for o in self.graph.output}
        producer = {o: k for k, n in enumerate(nodes) for o in n.output if o}
        skip = set()
        for k, node in enumerate(nodes):
            if k in skip:
                continue
            bn = self._bn_after(node, nodes, producer, uses, outs)
            if bn is not None:
                skip.add(bn)
            try:
                self._convert(k, node, nodes[bn] if bn is not None else None)
            except NotKnownAtImport as e:
                if self.parent is None:
                    e.value_name = self._input_behind(e.value_name, node, producer)
                raise

    def _input_behind(self, name: str, node, producer: dict) -> str:
        """The first graph input (not yet bound) that the value `name` is computed from,
        or `name`: what the conformance backend must bind to import the model (a value
        inside a Loop/Scan/If body counts as computed from everything its node reads)."""
        free = {vi.name for vi in self.graph.input} - set(self.known) - {i.name for i in self.graph.initializer}
        nodes = list(self.graph.node)
        todo = [name] + list(_names_read(node))
        seen = set()
        while todo:
            n = todo.pop(0)
            if n in seen or not n:
                continue
            seen.add(n)
            if n in free:
                return n
            if n in producer:
                todo += list(_names_read(nodes[producer[n]]))
        return name

    def _bn_after(self, node, nodes, producer, uses, outs):
        if not self.fold_batchnorm or node.op_type != "Conv" or not node.output:
            return None
        user = next((k for k, n in enumerate(nodes) if node.output[0] in n.input), None)
        if user is None:
            return None
        ok = bn_fold.foldable(node, nodes[user], self.values, uses, outs, self.opset)
        return user if ok else None

    def _describe(self, k, node) -> str:
        label = repr(node.name) if node.name else f"#{k}"
        return f"node {label} ({node.op_type}, opset {self.opset})"

    def _convert(self, k, node, bn):
        describe = self._describe(k, node)
        if node.domain not in ("", "ai.onnx"):
            raise OnnxError(f"{describe}: domain {node.domain!r} is not supported (only the default ONNX domain)")
        conv = find_converter(node.op_type, self.opset, describe)
        unknown = sorted({a.name for a in node.attribute} - conv.attrs)
        if unknown:
            raise OnnxError(f"{describe}: attribute {unknown[0]} is not supported")
        values = []
        for name in node.input:
            if name and name not in self.values:
                raise OnnxError(f"{describe}: input {name!r} is computed by no earlier node (malformed model)")
            values.append(self.values[name] if name else None)
        if bn is not None:
            w, b = bn_fold.fold(node, bn, self.values)
            values = [values[0], w, b]
        fold = all(not isinstance(v, Tensor) for v in values if v is not None) and not _has_subgraph(node)
        where = f"{node.name or node.op_type + '#' + str(k)} ({node.op_type})"
        outs = self._run(conv, node, values, fold, describe, where)
        names = [o for o in (bn.output if bn is not None else node.output)]
        self._bind(names, outs, describe)

    def _run(self, conv, node, values, fold, describe, where) -> list:
        as_tensor = (lambda v: self._tensor(v, fold))
        ctx = Ctx(node, self.opset, values, as_tensor, describe, self.subgraph)
        try:
            with located_at(where):
                outs = conv.fn(ctx)
        except OnnxError:
            raise
        except (NNGraphError, ValueError, TypeError, IndexError, KeyError) as e:
            raise OnnxError(f"{describe}: {type(e).__name__}: {e}") from e
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        if fold:
            outs = self._fold(outs, describe)
        return outs

    def _fold(self, outs, describe) -> list:
        """Evaluate outputs that depend only on constants, at import."""
        tensors = [o for o in outs if isinstance(o, Tensor)]
        if not tensors or not all(t.type.is_static for t in tensors):
            return outs  # (a value whose sizes are dynamic, e.g. zeros of the batch size, stays a node)
        try:
            arrays = iter(evaluate(tensors, {}))
        except NNGraphError as e:
            raise OnnxError(f"{describe}: folding it at import failed: {e}") from e
        return [next(arrays) if isinstance(o, Tensor) else o for o in outs]

    def _bind(self, names, outs, describe):
        for i, name in enumerate(names):
            if not name:
                continue
            if i >= len(outs):
                raise OnnxError(f"{describe}: output {i} ({name!r}) is not supported")
            v = outs[i]
            if name in self.declared and isinstance(v, Tensor):
                check_declared(self.declared[name], v, f"{describe}: output {name!r}")
            self.values[name] = v


def _names_read(node):
    """The value names a node reads: its inputs and, through its subgraphs, those its
    bodies read (names a body computes itself are harmless extras)."""
    yield from node.input
    for a in node.attribute:
        for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            for n in g.node:
                yield from _names_read(n)


def _has_subgraph(node) -> bool:
    """Whether the node holds a body (Loop, Scan, If), which may read graph values
    that are not among its inputs: such a node is never folded on its inputs alone."""
    return any(a.HasField("g") or len(a.graphs) for a in node.attribute)
