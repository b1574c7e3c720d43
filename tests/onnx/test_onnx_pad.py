"""ONNX Pad in edge, reflect and wrap modes (a take of the rows np.pad names, per axis):
values as NumPy's np.pad on both CPU targets, the gradient, refusals by name."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import nngraph as ng
from nngraph.onnx import OnnxError


def _pad_model(shape, pads, mode, axes=None):
    inputs = ["x", "pads"] + (["", "axes"] if axes is not None else [])
    inits = [numpy_helper.from_array(np.asarray(pads, np.int64), "pads")]
    if axes is not None:
        inits.append(numpy_helper.from_array(np.asarray(axes, np.int64), "axes"))
    node = helper.make_node("Pad", inputs, ["y"], name="pad", mode=mode)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * len(shape))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


@pytest.mark.parametrize("compile_target", ["reference", "cpu"])
@pytest.mark.parametrize("mode", ["edge", "reflect", "wrap"])
def test_pad_modes_match_numpy(mode, compile_target):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    m = ng.onnx.load(_pad_model(x.shape, [1, 3, 2, 4], mode, axes=[2, -1]))
    (got,) = m.compile(target=compile_target)(x)
    np.testing.assert_array_equal(got, np.pad(x, [(0, 0), (0, 0), (1, 2), (3, 4)], mode=mode))


def test_the_gradient_of_edge_padding_adds_the_copies_into_the_edge():
    m = ng.onnx.load(_pad_model((1, 3), [0, 2, 0, 1], "edge"))
    (x,), (y,) = m.inputs, m.outputs
    w = np.arange(1, 7, dtype=np.float32).reshape(1, 6)  # weights of the padded positions
    (g,) = ng.compile([x], [ng.grad(ng.sum(y * w), x)], target="cpu")(np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(g, [[1 + 2 + 3, 4, 5 + 6]])


def test_reflect_pads_as_large_as_the_axis_are_refused():
    with pytest.raises(OnnxError, match=r"node 'pad' \(Pad, opset 19\): mode='reflect' pads \(0, 3\) of axis 1"):
        ng.onnx.load(_pad_model((2, 3), [0, 0, 0, 3], "reflect"))


def test_an_unknown_mode_is_refused_by_name():
    with pytest.raises(OnnxError, match="attribute mode='mirror' is not supported"):
        ng.onnx.load(_pad_model((2, 3), [0, 0, 0, 1], "mirror"))
