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


def _run_time_empty_model(op, elem, opset):
    """`op` over axis 1 of an ["N", "K"] input: axes an attribute below opset 18, an input since."""
    if opset < 18:
        node, inits = helper.make_node(op, ["x"], ["y"], axes=[1], keepdims=0), []
    else:
        node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=0)
        inits = [numpy_helper.from_array(np.array([1], np.int64), "axes")]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, ["N", "K"])],
                              [helper.make_tensor_value_info("y", elem, ["N"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("elem,dtype,opset", [
    (elem, dtype, opset) for elem, dtype in ((TensorProto.INT32, np.int32), (TensorProto.INT64, np.int64),
                                             (TensorProto.FLOAT, np.float32)) for opset in (11, 13, 18)]
    + [(TensorProto.BOOL, np.bool_, 18), (TensorProto.BOOL, np.bool_, 20)])
def test_reducing_an_axis_empty_only_at_run_time_gives_the_identity(target, op, elem, dtype, opset):
    """An ["N", "K"] input fed (2, 0) (the empty axis is unknown at import), then (2, 3):
    the identity at every opset, as the spec (from ReduceMax-1 on), ONNX's reference
    evaluator and onnxruntime (numbers) all give it. Bool inputs are ReduceMax-20's
    (below it the reference evaluator's True for an empty max is no rule)."""
    model = _run_time_empty_model(op, elem, opset)
    fn = ng.onnx.load(model).compile(target="reference" if target == "oracle" else target)
    rng = np.random.default_rng(0)
    for x in (np.zeros((2, 0), dtype), (rng.standard_normal((2, 3)) * 5).astype(dtype)):
        got = fn(x)[0]
        want = ReferenceEvaluator(model).run(None, {"x": x})[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        if dtype is not np.bool_:
            np.testing.assert_array_equal(got, _onnxruntime(model, x))


def _onnxruntime(model, x):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
@pytest.mark.parametrize("opset", [13, 17, 18])
def test_empty_identity_survives_the_export_round_trip(op, dtype, opset):
    """ng.max/min(..., empty_identity=True) export as ReduceMax/ReduceMin, which give the
    identity over an empty axis at every opset: onnxruntime, the reference evaluator and
    the model imported back agree with the Function on an axis empty at run time (below
    opset 18 the model imported back raised InputError)."""
    x = ng.placeholder(("N", "K"), dtype, name="x")
    fn = ng.compile([x], [getattr(ng, op)(x, 1, empty_identity=True)], target="reference")
    model = ng.onnx.export(fn, opset=opset)
    back = ng.onnx.load(model).compile(target="reference")
    rng = np.random.default_rng(1)
    for a in (np.zeros((2, 0), dtype), (rng.standard_normal((2, 3)) * 5).astype(dtype)):
        want = fn(a)
        want = want[0] if isinstance(want, list) else want
        for got in (back(a)[0], ReferenceEvaluator(model).run(None, {"x": a})[0], _onnxruntime(model, a)):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
