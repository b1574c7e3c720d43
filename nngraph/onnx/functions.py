"""ONNX operators that the standard defines by a function body, converted by
importing that body in place of the node.

Newer ONNX operators (LinearAttention, RotaryEmbedding, CenterCropPad, the window
functions...) come with a definition as a graph of simpler operators, the same
graph the conformance suite's `_expanded` cases inline. For the ops listed in
FUNCTION_OPS nngraph imports that body, read from the installed onnx package at the
model's opset (context-dependent bodies are built for the node's input types), with
the node's attributes substituted for the body's attribute references and the
function's own defaults for those the node leaves out. The body's nodes go through
their own converters, so every attribute and input is checked there, and the op
differentiates like the ops of its body. An op is listed only when its conformance
cases pass this way.
"""
from __future__ import annotations

import numpy as np

from ..node import Tensor
from .dtypes import NNGRAPH_TO_ONNX
from .registry import SymShape, converter

# op type -> (the first opset whose definition is imported through its function body, its attributes)
FUNCTION_OPS = {
    "AffineGrid": (20, ("align_corners",)),
    "BlackmanWindow": (17, ("output_datatype", "periodic")),
    "CausalConvWithState": (27, ("activation",)),
    "CenterCropPad": (18, ("axes",)),
    "HammingWindow": (17, ("output_datatype", "periodic")),
    "HannWindow": (17, ("output_datatype", "periodic")),
    "LinearAttention": (27, ("chunk_size", "kv_num_heads", "q_num_heads", "scale", "update_rule")),
    "RotaryEmbedding": (23, ("interleaved", "num_heads", "rotary_embedding_dim")),
    "SwiGLU": (28, ("alpha",)),
}


def _type_proto(v):
    """The TypeProto of a value, for a context-dependent function body."""
    from onnx import helper
    if isinstance(v, Tensor):
        return helper.make_tensor_type_proto(NNGRAPH_TO_ONNX[v.dtype], [s if isinstance(s, int) else str(s)
                                                                      for s in v.shape])
    if isinstance(v, SymShape):
        return helper.make_tensor_type_proto(7, list(v.shape))
    a = np.asarray(v)
    return helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))


def _function(ctx, schema):
    """The FunctionProto of the op at the model's opset."""
    from onnx import FunctionProto

    def newest(versions):
        fit = [v for v in versions if v <= ctx.opset]
        return max(fit) if fit else None

    proto = FunctionProto()
    v = newest(schema.function_opset_versions)
    if v is not None:
        proto.ParseFromString(schema.get_function_with_opset_version(v))
        return proto
    v = newest(schema.context_dependent_function_opset_versions)
    if v is None:
        raise ctx.error(f"the onnx package defines no function body for {ctx.op_type} at opset {ctx.opset}")
    types = [_type_proto(x).SerializeToString() if x is not None else b"" for x in ctx.values]
    proto.ParseFromString(schema.get_context_dependent_function_with_opset_version(
        v, ctx.node.SerializeToString(), types))
    return proto


def _bind_attributes(node, given: dict):
    """A copy of a body node whose attribute references take the caller's values
    (`given`: name -> AttributeProto, the node's or the function's defaults)."""
    out = type(node)()
    out.CopyFrom(node)
    del out.attribute[:]
    for a in node.attribute:
        if a.ref_attr_name:
            if a.ref_attr_name in given:
                b = out.attribute.add()
                b.CopyFrom(given[a.ref_attr_name])
                b.name = a.name
            continue
        b = out.attribute.add()
        b.CopyFrom(a)
        if b.HasField("g"):
            _bind_graph(b.g, given)
        for g in b.graphs:
            _bind_graph(g, given)
    return out


def _bind_graph(graph, given: dict):
    nodes = [_bind_attributes(n, given) for n in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)


def _expand(ctx):
    from onnx import defs, helper
    schema = defs.get_schema(ctx.op_type, ctx.opset, "")
    fn = _function(ctx, schema)
    given = {name: a.default_value for name, a in schema.attributes.items() if a.default_value.type}
    given.update({a.name: a for a in fn.attribute_proto})
    given.update(ctx.attrs)
    label = ctx.node.name or ctx.op_type
    nodes = []
    for k, n in enumerate(fn.node):
        n = _bind_attributes(n, given)
        n.name = f"{label}/{n.name or n.op_type + '#' + str(k)}"
        nodes.append(n)
    graph = helper.make_graph(nodes, f"{ctx.op_type} function body",
                              [helper.make_empty_tensor_value_info(i) for i in fn.input],
                              [helper.make_empty_tensor_value_info(o) for o in fn.output])
    opset = next((o.version for o in fn.opset_import if o.domain in ("", "ai.onnx")), ctx.opset)
    bound = [ctx.values[i] if i < len(ctx.values) else None for i in range(len(fn.input))]
    return ctx.inline(graph, bound, opset)


for _op, (_first, _attrs) in FUNCTION_OPS.items():
    converter(_op, _first, attrs=_attrs)(_expand)
