"""nngraph as an `onnx.backend.base.Backend`, so that
`onnx.backend.test.BackendTest(nngraph.onnx.backend, __name__)` runs the ONNX
conformance suite. The target is the backend's default (`TARGET`, "cpu") or the
`target=` keyword of prepare/run_model/run_node.

A model whose shapes, axes or pads come from graph inputs (the conformance suite
feeds them at run time) cannot be compiled before its first call: it is imported
on each call with its integer inputs bound to that call's arrays (one compile per
distinct value, cached)."""
from __future__ import annotations

import numpy as np
from onnx.backend.base import Backend, BackendRep

from ..types import DTYPES
from .importer import load
from .registry import NotKnownAtImport, OnnxError

TARGET = "cpu"


class NNGraphRep(BackendRep):
    """A compiled imported model; `run` takes arrays in the order of the model's
    non-initializer inputs (or a dict by ONNX name) and returns a list of arrays."""

    def __init__(self, model, target):
        self.model, self.target, self.cache = model, target, {}
        graph_inputs = {i.name for i in model.graph.initializer}
        self.names = [vi.name for vi in model.graph.input if vi.name not in graph_inputs]
        self.bound = self._inputs_needed_at_import()
        self.fixed = self._compile({}) if not self.bound else None

    def _inputs_needed_at_import(self) -> list:
        """Graph inputs the import needs as values (found by importing with
        placeholder values bound and seeing which it asks for)."""
        needed = []
        while True:
            try:
                load(self.model, known={n: _stand_in(self.model, n) for n in needed})
                return needed
            except NotKnownAtImport as e:
                if e.value_name not in self.names or e.value_name in needed:
                    raise
                needed.append(e.value_name)
            except OnnxError:
                if needed:  # the stand-in values may not fit; the call's real values will tell
                    return needed
                raise

    def _specialised(self, arrays: dict):
        """The import with the bound inputs' values of this call (more inputs are
        bound when the real values reveal that the import needs them)."""
        while True:
            known = {n: arrays[n] for n in self.bound}
            key = tuple((n, a.dtype.str, a.shape, a.tobytes()) for n, a in sorted(known.items()))
            if key in self.cache:
                return self.cache[key]
            try:
                self.cache[key] = self._compile(known)
                return self.cache[key]
            except NotKnownAtImport as e:
                if e.value_name not in self.names or e.value_name in self.bound:
                    raise
                self.bound.append(e.value_name)

    def _compile(self, known):
        imported = load(self.model, known=known)
        return imported, imported.compile(target=self.target)

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            inputs = [inputs[n] for n in self.names]
        elif isinstance(inputs, np.ndarray):
            inputs = [inputs]
        arrays = dict(zip(self.names, (np.asarray(a) for a in inputs)))
        if self.fixed is not None:
            imported, fn = self.fixed
        else:
            imported, fn = self._specialised(arrays)
        args = []
        for name, ph in zip(imported.input_names, imported.inputs):
            a, want = arrays[name], DTYPES[ph.dtype][1]
            args.append(a.astype(want) if a.dtype != want and a.dtype.kind == want.kind else a)
        return list(fn(*args))


def _stand_in(model, name):
    """A value of a graph input's declared type, to find out which inputs are needed at import."""
    from onnx.helper import tensor_dtype_to_np_dtype
    vi = next(v for v in model.graph.input if v.name == name)
    tt = vi.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim)
    return np.ones(shape, tensor_dtype_to_np_dtype(tt.elem_type))


class NNGraphBackend(Backend):
    @classmethod
    def prepare(cls, model, device="CPU", target=None, **kwargs):
        super().prepare(model, device, **kwargs)
        return NNGraphRep(model, target or TARGET)

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device="CPU", outputs_info=None, **kwargs):
        """One node as a model whose input types are the given arrays' (at the
        default domain's newest opset nngraph handles)."""
        from onnx import helper
        from onnx.helper import make_tensor_value_info, np_dtype_to_tensor_dtype
        from .registry import LATEST_OPSET
        ins = [make_tensor_value_info(n, np_dtype_to_tensor_dtype(np.asarray(a).dtype), np.asarray(a).shape)
               for n, a in zip(node.input, inputs)]
        outs = [helper.make_empty_tensor_value_info(n) for n in node.output]
        graph = helper.make_graph([node], "run_node", ins, outs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", LATEST_OPSET)])
        return cls.run_model(model, list(inputs), device, **kwargs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device in ("CPU",)


prepare = NNGraphBackend.prepare
run_model = NNGraphBackend.run_model
run_node = NNGraphBackend.run_node
supports_device = NNGraphBackend.supports_device
