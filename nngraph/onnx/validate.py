"""Reading a model and checking it against its own metadata: a model that is not
ONNX, fails the checker, or declares a type its nodes contradict is refused with
an OnnxError naming what is wrong."""
from __future__ import annotations

from ..types import Dim
from .dtypes import ONNX_TO_NNGRAPH, onnx_dtype_name
from .registry import OnnxError


def read_model(model) -> tuple:
    """(ModelProto, default-domain opset) from a path, bytes or a ModelProto."""
    import onnx
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        try:
            model = onnx.load(model) if not isinstance(model, bytes) else onnx.load_from_string(model)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise OnnxError(f"malformed model: cannot parse it as ONNX ({type(e).__name__}: {e})") from None
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"ng.onnx.load takes a path or an onnx.ModelProto, got {type(model).__name__}")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid"
        raise OnnxError(f"malformed model: the ONNX checker refuses it: {first}") from None
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx"))
    if opset is None:
        raise OnnxError("malformed model: it imports no default-domain (ai.onnx) opset")
    return model, int(opset)


def check_declared(vi, t, what: str) -> None:
    """Raise when the value_info the model declares for a value contradicts what was computed."""
    if not vi.type.HasField("tensor_type"):
        return
    tt = vi.type.tensor_type
    want = ONNX_TO_NNGRAPH.get(tt.elem_type)
    if tt.elem_type and want != t.dtype:
        raise OnnxError(f"{what}: the model declares element type {onnx_dtype_name(tt.elem_type)} "
                        f"but it computes {t.type}")
    if not tt.HasField("shape"):
        return
    dims = tt.shape.dim
    if len(dims) != t.ndim:
        raise OnnxError(f"{what}: the model declares rank {len(dims)} but it computes {t.type}")
    for ax, (d, s) in enumerate(zip(dims, t.shape)):
        if d.HasField("dim_value") and not isinstance(s, Dim) and d.dim_value != s:
            raise OnnxError(f"{what}: the model declares size {d.dim_value} on axis {ax} "
                            f"but it computes {t.type}")
