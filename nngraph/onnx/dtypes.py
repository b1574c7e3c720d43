"""ONNX tensor element types <-> nngraph dtypes (TensorProto.DataType numbers)."""
from __future__ import annotations

ONNX_TO_NNGRAPH = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 11: "float64"}
NNGRAPH_TO_ONNX = {v: k for k, v in ONNX_TO_NNGRAPH.items()}
ONNX_NAMES = {0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32",
              7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64",
              14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16"}


def onnx_dtype_name(code: int) -> str:
    return ONNX_NAMES.get(code, f"type #{code}")


def to_nngraph(code: int, what: str, error) -> str:
    """The nngraph dtype for an ONNX element type, or `error(...)` naming it."""
    if code not in ONNX_TO_NNGRAPH:
        raise error(f"{what} has element type {onnx_dtype_name(code)}, which nngraph does not support "
                    f"(supported: FLOAT, DOUBLE, INT32, INT64, BOOL)")
    return ONNX_TO_NNGRAPH[code]
