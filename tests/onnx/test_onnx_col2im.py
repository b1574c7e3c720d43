"""ONNX Col2Im against PyTorch's fold (strides, dilations, pads) at two batch sizes from
one import, on the reference and cpu targets; its gradient by central differences."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import nngraph as ng
from onnx_checks import fd_gradients


def _model(cols_shape, image, block, dtype=np.float32, **attrs):
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    node = helper.make_node("Col2Im", ["x", "image", "block"], ["y"], name="fold", **attrs)
    channels = cols_shape[1] // int(np.prod(block))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, ["N"] + list(cols_shape[1:]))],
                              [helper.make_tensor_value_info("y", elem, ["N", channels] + list(image))],
                              [numpy_helper.from_array(np.asarray(image, np.int64), "image"),
                               numpy_helper.from_array(np.asarray(block, np.int64), "block")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


CASES = {
    "plain": ((5, 6), (2, 3), {}),
    "strided_dilated_padded": ((7, 6), (3, 2), {"strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 2, 1]}),
}


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_col2im_matches_pytorch_fold(case, backend):
    image, block, attrs = CASES[case]
    pads = attrs.get("pads", [0, 0, 0, 0])
    padded = [image[i] + pads[i] + pads[i + 2] for i in range(2)]
    stride, dil = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
    blocks = int(np.prod([(p - (d * (k - 1) + 1)) // s + 1 for p, d, k, s in zip(padded, dil, block, stride)]))
    fn = ng.onnx.load(_model((1, 3 * int(np.prod(block)), blocks), image, block, **attrs)).compile(target=backend)
    for batch in (1, 4):
        cols = np.random.default_rng(batch).standard_normal((batch, 3 * int(np.prod(block)), blocks)).astype(np.float32)
        # PyTorch pads symmetrically: fold the padded image, then cut this case's pads off
        full = torch.nn.functional.fold(torch.from_numpy(cols), padded, block, dilation=dil, stride=stride).numpy()
        want = full[:, :, pads[0]:pads[0] + image[0], pads[1]:pads[1] + image[1]]
        np.testing.assert_allclose(fn(cols)[0], want, rtol=1e-5, atol=1e-5)


def test_col2im_gradient_matches_central_differences():
    model = _model((1, 4, 8), (3, 4), (2, 2), np.float64, pads=[0, 1, 0, 0])
    fd_gradients(model, {"x": np.random.default_rng(0).standard_normal((1, 4, 8))})
