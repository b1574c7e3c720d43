"""ONNX operators composed at import: Atan/Asin/Acos (a rational arctangent) against
NumPy to an ulp or two, Compress and ReverseSequence (a take of positions known at
import) and ops imported through their ONNX function body (AffineGrid, CenterCropPad,
HannWindow) against onnxruntime; gradients by central differences."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import nngraph as ng
from nngraph.onnx import OnnxError
from onnx_checks import fd_gradients, matches_onnxruntime, ort_run

_ELEM = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


def _one_node(op, inputs: dict, out_shape, inits=None, opset=17, out_elem=None, **attrs):
    """A model of one node; `inputs`: name -> (dtype, shape); `inits`: name -> array."""
    inits = inits or {}
    node = helper.make_node(op, list(inputs) + list(inits), ["y"], name="op", **attrs)
    vis = [helper.make_tensor_value_info(k, _ELEM.get(d, d), s) for k, (d, s) in inputs.items()]
    out = helper.make_tensor_value_info("y", out_elem or _ELEM[next(iter(inputs.values()))[0]], out_shape)
    graph = helper.make_graph([node], "g", vis, [out], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op,numpy_fn,domain", [("Atan", np.arctan, 1e6), ("Asin", np.arcsin, 1.0),
                                                ("Acos", np.arccos, 1.0)])
def test_inverse_trigonometric_ops_are_within_two_ulps_of_numpy(op, numpy_fn, domain, dtype, backend):
    x = np.concatenate([np.linspace(-domain, domain, 4001), np.linspace(-1, 1, 2001),
                        np.geomspace(1e-20, domain, 500), -np.geomspace(1e-20, domain, 500)]).astype(dtype)
    fn = ng.onnx.load(_one_node(op, {"x": (dtype, [x.size])}, [x.size])).compile(target=backend)
    want = numpy_fn(x.astype(np.float64))
    got = fn(x)[0]
    ulp = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    assert np.max(np.abs(got - want) / ulp) <= 2.0


@pytest.mark.parametrize("op", ["Atan", "Asin", "Acos"])
def test_inverse_trigonometric_gradients_match_central_differences(op):
    x = np.array([-0.93, -0.4, -0.01, 0.2, 0.65, 0.7, 0.97]) * (3.0 if op == "Atan" else 1.0)
    fd_gradients(_one_node(op, {"x": (np.float64, [7])}, [7]), {"x": x})


def test_atan_of_infinities_is_a_right_angle():
    x = np.array([np.inf, -np.inf, 0.0], np.float32)
    got = ng.onnx.load(_one_node("Atan", {"x": (np.float32, [3])}, [3])).compile(target="cpu")(x)[0]
    np.testing.assert_allclose(got, [np.pi / 2, -np.pi / 2, 0.0], rtol=1e-7)


@pytest.mark.parametrize("axis", [None, 0, -1])
def test_compress_with_a_condition_known_at_import_matches_numpy(axis):
    cond = np.array([True, False, True, True])
    attrs = {} if axis is None else {"axis": axis}
    out = {None: [3], 0: [3, 4], -1: [4, 3]}[axis]
    model = _one_node("Compress", {"x": (np.float64, [4, 4])}, out, {"cond": cond}, opset=11, **attrs)
    x = np.arange(16.0).reshape(4, 4)
    got = ng.onnx.load(model).compile(target="cpu")(x)[0]
    np.testing.assert_array_equal(got, np.compress(cond, x, axis=axis))
    fd_gradients(model, {"x": np.random.default_rng(0).standard_normal((4, 4))})


def test_compress_with_a_run_time_condition_is_refused_by_name():
    model = _one_node("Compress", {"x": (np.float32, [4]), "cond": (TensorProto.BOOL, [4])}, [2], opset=11)
    with pytest.raises(OnnxError, match=r"node 'op' \(Compress, opset 11\): input 1 \(condition"):
        ng.onnx.load(model)


@pytest.mark.parametrize("batch_axis,time_axis", [(0, 1), (1, 0)])
def test_reverse_sequence_matches_onnxruntime(batch_axis, time_axis):
    lens = np.array([4, 1, 3], np.int64)
    shape = [3, 4, 2] if batch_axis == 0 else [4, 3, 2]
    model = _one_node("ReverseSequence", {"x": (np.float32, shape)}, shape, {"lens": lens}, opset=17,
                      batch_axis=batch_axis, time_axis=time_axis)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    got = ng.onnx.load(model).compile(target="cpu")(x)[0]
    np.testing.assert_array_equal(got, ort_run(model, {"x": x})[0])


def test_ops_imported_through_their_function_body_match_onnxruntime():
    grid = _one_node("AffineGrid", {"theta": (np.float32, [3, 2, 3])}, [3, 3, 4, 2],
                     {"size": np.array([3, 1, 3, 4], np.int64)}, opset=20, align_corners=1)
    theta = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(ng.onnx.load(grid).compile(target="cpu")(theta)[0], ort_run(grid, {"theta": theta})[0],
                               rtol=1e-5, atol=1e-6)
    crop = _one_node("CenterCropPad", {"x": (np.float32, ["N", 5, 3])}, ["N", 3, 6], {"shape": np.array([3, 6])},
                     opset=18, axes=[1, 2])
    matches_onnxruntime(crop, lambda n: {"x": np.random.default_rng(n).standard_normal((n, 5, 3))
                                         .astype(np.float32)}, "cpu")
    window = _one_node("HannWindow", {}, [10], {"size": np.array(10, np.int64)}, opset=17,
                       out_elem=TensorProto.FLOAT, periodic=0)
    np.testing.assert_allclose(ng.onnx.load(window).compile(target="cpu")()[0], ort_run(window, {})[0],
                               rtol=1e-6, atol=1e-7)


def test_gradients_through_a_function_body_match_central_differences():
    model = _one_node("AffineGrid", {"theta": (np.float64, [2, 2, 3])}, [2, 3, 4, 2],
                      {"size": np.array([2, 1, 3, 4], np.int64)}, opset=20)
    fd_gradients(model, {"theta": np.random.default_rng(2).standard_normal((2, 2, 3))})


def test_pow_before_opset_7_broadcasts_its_exponent_from_axis():
    node = helper.make_node("Pow", ["x", "y"], ["z"], broadcast=1, axis=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
                                            helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)], ir_version=3)
    x = np.random.default_rng(0).uniform(0.5, 2.0, (2, 3, 4)).astype(np.float32)
    y = np.array([1.0, 2.0, 0.5], np.float32)
    got = ng.onnx.load(model).compile(target="cpu")(x, y)[0]
    np.testing.assert_allclose(got, x ** y[None, :, None], rtol=1e-6)
