"""ONNX Resize (weights per axis worked out at import): PyTorch's nn.Upsample and
F.interpolate exported and matched on the CPU target, the gradient, refusals by name.
(The conformance suite checks every mode against ONNX's reference implementation.)"""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import nngraph as ng
from nngraph.onnx import OnnxError


class Interpolate(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs

    def forward(self, x):
        return torch.nn.functional.interpolate(x, **self.kwargs)


def _torch_model(module, example):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), f, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "N"}},
                          opset_version=17)
    return f.getvalue()


KWARGS = {
    "nearest_x2": dict(scale_factor=2, mode="nearest"),
    "nearest_to_size": dict(size=(5, 11), mode="nearest"),
    "bilinear": dict(scale_factor=(2, 3), mode="bilinear", align_corners=False),
    "bilinear_corners": dict(scale_factor=2, mode="bilinear", align_corners=True),
    "bicubic_down": dict(size=(3, 4), mode="bicubic", align_corners=False),
}


@pytest.mark.parametrize("case", sorted(KWARGS))
def test_pytorch_interpolation_imports_and_matches(case):
    module = Interpolate(**KWARGS[case]).eval()
    fn = ng.onnx.load(_torch_model(module, torch.randn(1, 2, 6, 7))).compile(target="cpu")
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 2, 6, 7)).astype(np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(fn(x)[0], want, rtol=1e-5, atol=1e-5)


def _resize_model(shape, mode, scales, dtype=TensorProto.FLOAT, **attrs):
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", mode=mode, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", dtype, list(shape))],
                              [helper.make_tensor_value_info("y", dtype, [None] * len(shape))],
                              [numpy_helper.from_array(np.asarray(scales, np.float32), "scales")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_linear_resize_differentiates_as_its_weight_matrix():
    m = ng.onnx.load(_resize_model((1, 1, 1, 4), "linear", [1, 1, 1, 2]))
    (x,), (y,) = m.inputs, m.outputs
    (g,) = ng.compile([x], [ng.grad(ng.sum(y), x)], target="cpu")(np.zeros((1, 1, 1, 4), np.float32))
    # half_pixel x2: each input position gets weights summing to 2, the edges keep their clamped share
    np.testing.assert_allclose(g.reshape(-1), [2.0, 2.0, 2.0, 2.0], rtol=1e-6)


def test_nearest_resize_of_integers_picks_rows():
    m = ng.onnx.load(_resize_model((1, 3), "nearest", [1, 2], TensorProto.INT64))
    (got,) = m.compile(target="cpu")(np.array([[4, 5, 6]], np.int64))
    np.testing.assert_array_equal(got, [[4, 4, 5, 5, 6, 6]])


@pytest.mark.parametrize("attrs, message", [
    ({"coordinate_transformation_mode": "quarter_pixel"}, "coordinate_transformation_mode='quarter_pixel'"),
    ({"nearest_mode": "random"}, "nearest_mode='random'"),
    ({"antialias": 1}, "antialias=1 is not supported with mode='nearest'"),
])
def test_bad_resize_attributes_are_refused_by_name(attrs, message):
    with pytest.raises(OnnxError, match=r"node 'resize' \(Resize, opset 19\): .*" + message):
        ng.onnx.load(_resize_model((1, 3), "nearest", [1, 2], **attrs))


def test_linear_resize_of_integers_is_refused():
    with pytest.raises(OnnxError, match="mode='linear' needs float data, got i64"):
        ng.onnx.load(_resize_model((1, 3), "linear", [1, 2], TensorProto.INT64))
