"""What ng.onnx.load returns: placeholders in, tensors out, parameters by name."""
from __future__ import annotations


class Imported:
    """An imported model. `inputs` are placeholders (in the model's input order,
    named as identifiers made from the ONNX names; `input_names` keeps those),
    `outputs` the tensors of the graph outputs, `params` maps initializer names to
    the parameters made from them. Compile, differentiate or fine-tune them like
    any graph; `compile(...)` is ng.compile(inputs, outputs, ...)."""

    def __init__(self, inputs, outputs, params, output_names, opset, model, known=()):
        self.inputs, self.outputs, self.params = list(inputs), list(outputs), dict(params)
        self.input_names = [vi.name for vi in model.graph.input if vi.name not in
                            {i.name for i in model.graph.initializer} and vi.name not in known]
        self.output_names, self.opset = list(output_names), opset
        self.producer = f"{model.producer_name} {model.producer_version}".strip()

    def compile(self, target="cpu", **options):
        """ng.compile(self.inputs, self.outputs (always a list), target=target, **options)."""
        from ..compiler import compile as ng_compile
        return ng_compile(self.inputs, list(self.outputs), target=target, **options)

    def __repr__(self):
        ins = ", ".join(f"{p.name}: {p.type}" for p in self.inputs)
        outs = ", ".join(str(o.type) for o in self.outputs)
        return f"<ng.onnx.Imported opset {self.opset}: ({ins}) -> ({outs}), {len(self.params)} parameters>"
