"""ONNX Conv and ConvTranspose with three spatial axes (sums of 2-d convolutions over
the depth taps, nngraph/onnx/conv3d.py): strides, dilations, groups, asymmetric pads,
auto_pad and output windows against onnxruntime at two batch sizes, on the reference
and cpu targets; gradients in the input, weight and bias by central differences."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_checks import fd_gradients, matches_onnxruntime


def _model(op, x_shape, w_shape, bias=True, dtype=np.float32, weights_as_inputs=False, **attrs):
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    rng = np.random.default_rng(0)
    w = (0.3 * rng.standard_normal(w_shape)).astype(dtype)
    out_channels = w_shape[0] if op == "Conv" else w_shape[1] * attrs.get("group", 1)
    b = rng.standard_normal(out_channels).astype(dtype)
    names = ["x", "w"] + (["b"] if bias else [])
    node = helper.make_node(op, names, ["y"], name="conv", **attrs)
    inputs = [helper.make_tensor_value_info("x", elem, ["N"] + list(x_shape[1:]))]
    params = {"w": w, "b": b} if bias else {"w": w}
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(k, elem, list(v.shape)) for k, v in params.items()]
        inits = []
    else:
        inits = [numpy_helper.from_array(v, k) for k, v in params.items()]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", elem, [None] * 5)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), params


CONV = {
    "plain": ((2, 3, 4, 5, 6), (4, 3, 2, 3, 2), {}),
    "strided_dilated_padded": ((2, 2, 7, 6, 5), (3, 2, 3, 2, 2), {"strides": [2, 1, 2], "dilations": [2, 1, 1],
                                                                  "pads": [1, 0, 2, 2, 1, 0]}),
    "groups": ((1, 4, 5, 4, 4), (6, 2, 3, 1, 2), {"group": 2}),
    "same_upper": ((1, 2, 5, 4, 3), (2, 2, 3, 3, 2), {"strides": [2, 2, 1], "auto_pad": "SAME_UPPER"}),
}


CONV_TRANSPOSE = {
    "plain": ((2, 3, 2, 3, 2), (3, 2, 2, 2, 3), {}),
    "strided_with_pads": ((1, 2, 3, 2, 3), (2, 3, 3, 2, 2), {"strides": [2, 3, 1], "pads": [1, 0, 0, 2, 1, 0]}),
    "output_padding_dilated": ((1, 2, 2, 3, 2), (2, 2, 2, 2, 2), {"strides": [3, 2, 2], "dilations": [2, 1, 1],
                                                                  "output_padding": [1, 1, 0]}),
    "groups": ((1, 4, 2, 2, 3), (4, 1, 2, 2, 2), {"group": 2}),
}


CASES = [("Conv", name) for name in sorted(CONV)] + [("ConvTranspose", name) for name in sorted(CONV_TRANSPOSE)]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("op,case", CASES)
def test_3d_convolution_matches_onnxruntime(op, case, backend):
    x_shape, w_shape, attrs = (CONV if op == "Conv" else CONV_TRANSPOSE)[case]
    model, _ = _model(op, x_shape, w_shape, **attrs)
    feeds = (lambda n: {"x": np.random.default_rng(n).standard_normal((n,) + x_shape[1:]).astype(np.float32)})
    built = "conv2d" if op == "Conv" else "conv2d_grad_input"  # ng.conv_transpose2d builds the latter
    matches_onnxruntime(model, feeds, backend, [built], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op,x_shape,w_shape,attrs", [
    ("Conv", (2, 2, 3, 3, 2), (2, 2, 2, 2, 1), {"strides": [2, 1, 1], "pads": [1, 0, 0, 0, 1, 0]}),
    ("ConvTranspose", (1, 2, 2, 2, 2), (2, 1, 2, 1, 2), {"strides": [2, 1, 1], "pads": [0, 1, 0, 1, 0, 0]}),
])
def test_3d_convolution_gradients_match_central_differences(op, x_shape, w_shape, attrs):
    model, params = _model(op, x_shape, w_shape, dtype=np.float64, weights_as_inputs=True, **attrs)
    x = np.random.default_rng(5).standard_normal(x_shape)
    fd_gradients(model, dict(x=x, **params))
