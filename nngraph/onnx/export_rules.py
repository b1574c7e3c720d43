"""Exporters of the ops whose ONNX form spells a rule of nngraph/semantics.py (mod, fmod,
trunc_div: the rule's own functions emit the ONNX nodes, so the exported model gives
nngraph's answers for every divisor, 0 and -1 included), and of the bitwise ops, which
ONNX has from opset 18 on."""
from __future__ import annotations

import numpy as np

from .. import semantics
from .export_ops import exporter, in_result_dtype
from .registry import OnnxError

# the scalar ops the rules use, as ONNX nodes (not_equal is Not(Equal))
_RULE_OPS = {"add": "Add", "sub": "Sub", "equal": "Equal", "less": "Less", "where": "Where",
             "logical_and": "And", "logical_or": "Or", "fmod": "Mod", "trunc_div": "Div"}
_BITWISE = {"bitwise_and": "BitwiseAnd", "bitwise_or": "BitwiseOr", "bitwise_xor": "BitwiseXor",
            "bitwise_not": "BitwiseNot"}
BITWISE_OPSET = 18


def _rule_builders(em, dtype):
    """`op(name, *args)` and `const(v)` writing ONNX nodes, as semantics.py's rules ask."""
    def op(name, *args):
        if name == "not_equal":
            return em.node("Not", [em.node("Equal", list(args))])
        attrs = {"fmod": 1} if name == "fmod" else {}
        return em.node(_RULE_OPS[name], list(args), **attrs)

    def const(v):
        return em.const(np.asarray(v, np.dtype(dtype)), "k")

    return op, const


@exporter("mod", "fmod")
def _remainder(op_name, em, n, ins):
    """ONNX Mod with fmod=1 (C's fmod) and semantics.py's fix-ups: fmod=0 is refused on
    floats by the standard, and an integer divisor of 0 is undefined there."""
    a, b = in_result_dtype(em, n, ins)
    return semantics.remainder_from_fmod(op_name, a, b, n.dtype, *_rule_builders(em, n.dtype))


@exporter("trunc_div")
def _trunc_div(em, n, ins):
    """ONNX integer Div (C's division) by a divisor kept off 0 and -1 (semantics.py)."""
    a, b = in_result_dtype(em, n, ins)
    return semantics.trunc_div_from_sdiv(a, b, *_rule_builders(em, n.dtype))


@exporter(*_BITWISE)
def _bitwise(op_name, em, n, ins):
    if em.opset < BITWISE_OPSET:
        raise OnnxError(f"export: {op_name} (built at {n.where}) is ONNX {_BITWISE[op_name]}, which needs "
                        f"opset >= {BITWISE_OPSET}; this export writes opset {em.opset} "
                        f"(pass opset={BITWISE_OPSET} or later)")
    return em.node(_BITWISE[op_name], in_result_dtype(em, n, ins))
