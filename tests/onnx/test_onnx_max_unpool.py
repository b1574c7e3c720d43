"""ONNX MaxUnpool fed the indices of onnxruntime's MaxPool (overlapping windows, so some
positions are named twice) against onnxruntime's MaxUnpool, with and without
output_shape (there against ONNX's reference, which onnxruntime departs from); its
gradient in the values: the cotangent read at the positions the indices name."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import nngraph as ng
from onnx_checks import ort_run


def _pool_model(shape, **attrs):
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("i", TensorProto.INT64, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _unpool_model(shape, out_shape, dtype=np.float32, output_shape=None, **attrs):
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    names = ["x", "i"] + (["shape"] if output_shape is not None else [])
    inits = [numpy_helper.from_array(np.asarray(output_shape, np.int64), "shape")] if output_shape is not None else []
    node = helper.make_node("MaxUnpool", names, ["y"], name="unpool", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, list(shape)),
                                            helper.make_tensor_value_info("i", TensorProto.INT64, list(shape))],
                              [helper.make_tensor_value_info("y", elem, list(out_shape))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("output_shape", [None, [2, 3, 8, 9]])
def test_max_unpool_matches_onnxruntime(output_shape):
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2]}
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 7)).astype(np.float32)
    pooled, idx = ort_run(_pool_model(x.shape, **attrs), {"x": x})
    out = output_shape or [2, 3, 7, 7]
    model = _unpool_model(pooled.shape, out, output_shape=output_shape, **attrs)
    assert len(np.unique(idx)) < idx.size  # overlapping windows name some positions twice
    got = ng.onnx.load(model).compile(target="cpu")(pooled, idx)[0]
    if output_shape is None:
        want = ort_run(model, {"x": pooled, "i": idx})[0]
    else:  # onnxruntime reads the indices in output_shape's layout (as PyTorch); ONNX's reference and its
        # conformance case place them in the unpooled shape and pad its end: nngraph follows the latter
        want = ReferenceEvaluator(model).run(None, {"x": pooled, "i": idx})[0]
    np.testing.assert_array_equal(got, want)


def test_max_unpool_gradient_in_the_values_reads_the_cotangent_at_their_positions():
    idx = np.array([[[[0, 3], [9, 14]]]], np.int64)
    model = _unpool_model((1, 1, 2, 2), (1, 1, 4, 4), np.float64, kernel_shape=[2, 2], strides=[2, 2])
    imported = ng.onnx.load(model)
    (x, i), (y,) = imported.inputs, imported.outputs
    r = ng.placeholder(y.shape, "float64", name="r")
    (g,) = ng.grad(ng.sum(y * r), [x])
    rs = np.random.default_rng(1).standard_normal((1, 1, 4, 4))
    got = ng.compile([x, i, r], g, target="reference")(np.ones((1, 1, 2, 2)), idx, rs)
    np.testing.assert_allclose(got.reshape(-1), rs.reshape(-1)[idx.reshape(-1)], rtol=1e-12)
