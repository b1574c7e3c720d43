"""ONNX GridSample: every mode, padding mode and align_corners against onnxruntime
(grid points inside, on and far outside the image; bicubic with border padding, where
onnxruntime departs from the spec, and 3-d against ONNX's reference implementation), on the reference and cpu targets; gradients in the image and the
grid by central differences."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import nngraph as ng
from nngraph.onnx import OnnxError
from onnx_checks import fd_gradients, ort_run


def _model(x_shape, grid_shape, dtype=np.float32, opset=16, **attrs):
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="sample", **attrs)
    out = list(x_shape[:2]) + list(grid_shape[1:-1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, list(x_shape)),
                                            helper.make_tensor_value_info("grid", elem, list(grid_shape))],
                              [helper.make_tensor_value_info("y", elem, out)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _grid(shape, seed=0, dtype=np.float32):
    """Points inside, on the corners, and up to 3.5 image widths outside."""
    rng = np.random.default_rng(seed)
    g = rng.uniform(-1.2, 1.2, shape)
    flat = g.reshape(-1)
    flat[:4] = [-1.0, 1.0, 0.0, -1.0]
    flat[4:8] = [3.5, -2.7, 1.01, -5.2]
    return g.astype(dtype)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [0, 1])
def test_grid_sample_matches_onnxruntime(mode, padding_mode, align_corners, backend):
    x_shape, g_shape = (2, 3, 5, 4), (2, 6, 7, 2)
    model = _model(x_shape, g_shape, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    x = np.random.default_rng(1).standard_normal(x_shape).astype(np.float32)
    grid = _grid(g_shape)
    got = ng.onnx.load(model).compile(target=backend)(x, grid)[0]
    if (mode, padding_mode) == ("bicubic", "border"):
        # onnxruntime clamps each of the 4x4 taps (as PyTorch) where the ONNX spec and its reference
        # clamp the point first: they differ outside the image; nngraph follows the spec.
        opset20 = _model(x_shape, g_shape, opset=20, mode="cubic", padding_mode="border", align_corners=align_corners)
        want = ReferenceEvaluator(opset20).run(None, {"x": x, "grid": grid})[0]
    else:
        want = ort_run(model, {"x": x, "grid": grid})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflection"])
def test_volumetric_grid_sample_matches_onnx_reference(mode, padding_mode):
    x_shape, g_shape = (1, 2, 3, 4, 3), (1, 2, 3, 4, 3)
    model = _model(x_shape, g_shape, opset=20, mode=mode, padding_mode=padding_mode, align_corners=0)
    x = np.random.default_rng(2).standard_normal(x_shape).astype(np.float32)
    grid = _grid(g_shape, 3)
    got = ng.onnx.load(model).compile(target="cpu")(x, grid)[0]
    want = ReferenceEvaluator(model).run(None, {"x": x, "grid": grid})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode,padding_mode", [("bilinear", "zeros"), ("bicubic", "border"),
                                               ("bilinear", "reflection")])
def test_grid_sample_gradients_match_central_differences(mode, padding_mode):
    model = _model((1, 2, 3, 4), (1, 2, 3, 2), np.float64, mode=mode, padding_mode=padding_mode)
    rng = np.random.default_rng(4)
    grid = rng.uniform(-1.3, 1.3, (1, 2, 3, 2))  # away from pixel centres: the weights are smooth there
    fd_gradients(model, {"x": rng.standard_normal((1, 2, 3, 4)), "grid": grid})


def test_a_3d_grid_sample_before_opset_20_is_refused_by_name():
    with pytest.raises(OnnxError, match=r"node 'sample' \(GridSample, opset 16\): 3-d input"):
        ng.onnx.load(_model((1, 1, 2, 2, 2), (1, 2, 2, 2, 3)))
