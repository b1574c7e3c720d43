"""ONNX in and out: `ng.onnx.load` imports a model, `ng.onnx.export` writes one,
`nngraph.onnx.backend` runs the ONNX conformance suite. Needs the `onnx` package
(`pip install nngraph[onnx]`), imported only when one of these is used."""
from __future__ import annotations

from . import (  # noqa: F401  (register converters)
    functions,
    ops_attention,
    ops_bitshift,
    ops_control,
    ops_conv_transpose,
    ops_einsum,
    ops_elementwise,
    ops_erf,
    ops_extra,
    ops_grid_sample,
    ops_inverse_trig,
    ops_layout,
    ops_nn,
    ops_norm,
    ops_products,
    ops_reduce,
    ops_resize,
    ops_rnn,
    ops_scan,
    ops_scatter,
    ops_shape,
    ops_slicing,
    ops_spectral,
    ops_unpool,
)
from .imported import Imported  # noqa: F401
from .registry import OnnxError, supported_ops

SUPPORTED_OPS = supported_ops()  # op type -> (first opset, last opset)


def load(model, fold_batchnorm: bool = True) -> Imported:
    """An ONNX model (path or ModelProto) as an nngraph graph: see Imported."""
    from .importer import load as _load
    return _load(model, fold_batchnorm=fold_batchnorm)


def export(fn_or_model, path=None, opset: int | None = None):
    """Write a compiled function or a built nn model as ONNX; returns the ModelProto."""
    from .exporter import export as _export
    return _export(fn_or_model, path, opset)


__all__ = ["load", "export", "Imported", "SUPPORTED_OPS", "OnnxError"]
