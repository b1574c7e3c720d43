"""ONNX ReduceMax/ReduceMin over an empty axis give the identity of the reduction, for
bool (False / True) as for numbers, against ONNX's reference implementation."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import nngraph as ng


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("elem,dtype", [(TensorProto.BOOL, np.bool_), (TensorProto.INT32, np.int32),
                                        (TensorProto.FLOAT, np.float32)])
def test_reducing_an_empty_axis_gives_the_identity(op, elem, dtype):
    node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, [2, 0, 3])],
                              [helper.make_tensor_value_info("y", elem, [2, 1, 3])],
                              [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    x = np.zeros((2, 0, 3), dtype)
    got = ng.onnx.load(model).compile(target="cpu")(x)[0]
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("elem,dtype", [(TensorProto.BOOL, np.bool_), (TensorProto.INT32, np.int32),
                                        (TensorProto.INT64, np.int64), (TensorProto.FLOAT, np.float32)])
def test_reducing_an_axis_empty_only_at_run_time_gives_the_identity(target, op, elem, dtype):
    """An ["N", "K"] input fed (2, 0) (the empty axis is unknown at import), then (2, 3)."""
    node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, ["N", "K"])],
                              [helper.make_tensor_value_info("y", elem, ["N"])],
                              [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    fn = ng.onnx.load(model).compile(target="reference" if target == "oracle" else target)
    rng = np.random.default_rng(0)
    for x in (np.zeros((2, 0), dtype), (rng.standard_normal((2, 3)) * 5).astype(dtype)):
        got = fn(x)[0]
        want = ReferenceEvaluator(model).run(None, {"x": x})[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
