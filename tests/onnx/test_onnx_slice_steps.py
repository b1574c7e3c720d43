"""ONNX Slice with negative steps (a take of the positions NumPy's slicing picks),
mixed with positive steps on other axes, against NumPy; the gradient by central differences."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import nngraph as ng
from onnx_checks import fd_gradients

BIG = 2 ** 63 - 1


def _model(starts, ends, axes, steps, out_shape, dtype=np.float32):
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    inits = [numpy_helper.from_array(np.asarray(v, np.int64), k) for k, v in
             (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps))]
    node = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, [6, 5])],
                              [helper.make_tensor_value_info("y", elem, list(out_shape))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


CASES = [  # (starts, ends, axes, steps), the same as NumPy slices of a [6, 5] array
    (([-1], [-BIG - 1], [0], [-1]), np.s_[::-1, :]),
    (([4, 0], [0, BIG], [0, 1], [-2, 2]), np.s_[4:0:-2, 0::2]),
    (([10, 3], [-10, -7], [1, 0], [-1, -3]), np.s_[3::-3, 10:-10:-1]),
    (([2], [2], [0], [-1]), np.s_[2:2:-1, :]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_negative_steps_match_numpy(case):
    (starts, ends, axes, steps), index = CASES[case]
    x = np.arange(30, dtype=np.float32).reshape(6, 5)
    want = x[index]
    got = ng.onnx.load(_model(starts, ends, axes, steps, want.shape)).compile(target="cpu")(x)[0]
    np.testing.assert_array_equal(got, want)


def test_the_gradient_of_a_reversing_slice_matches_central_differences():
    (starts, ends, axes, steps), index = CASES[1]
    x = np.random.default_rng(0).standard_normal((6, 5))
    fd_gradients(_model(starts, ends, axes, steps, x[index].shape, np.float64), {"x": x})
