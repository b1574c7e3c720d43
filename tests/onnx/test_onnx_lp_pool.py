"""ONNX LpPool: (sum over each window of |x|^p)^(1/p), padding counting as zeros,
against a NumPy loop on the CPU target."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import nngraph as ng


def _lp_pool_numpy(x, k, s, pads, p):
    xp = np.pad(np.abs(x.astype(np.float64)) ** p, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
    oh, ow = (xp.shape[2] - k[0]) // s[0] + 1, (xp.shape[3] - k[1]) // s[1] + 1
    out = np.zeros(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = xp[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]].sum((2, 3))
    return out ** (1.0 / p)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool_matches_numpy(p):
    x = np.random.default_rng(p).standard_normal((2, 3, 7, 6)).astype(np.float32)
    node = helper.make_node("LpPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 0, 1], p=p)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 7, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 3, 6])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    (got,) = ng.onnx.load(model).compile(target="cpu")(x)
    np.testing.assert_allclose(got, _lp_pool_numpy(x, (3, 2), (2, 1), (1, 0, 0, 1), p), rtol=1e-5, atol=1e-6)
