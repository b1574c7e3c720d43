"""ONNX MaxPool's Indices output (the flat position in x of each window's first
maximum; spatial part column-major with storage_order=1) against ONNX's reference
implementation, on every target: 2-d and 1-d windows, symmetric and asymmetric
padding, ceil_mode, a dynamic batch; a 3-d window's Indices is refused by name."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import nngraph as ng
from nngraph.onnx import OnnxError

CASES = {
    "2d": ((2, 3, 5, 6), dict(kernel_shape=[2, 2], strides=[2, 2])),
    "2d pads": ((2, 2, 5, 5), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "2d asymmetric pads": ((1, 2, 4, 5), dict(kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 2, 0])),
    "2d ceil": ((1, 2, 5, 5), dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    "1d": ((2, 3, 7), dict(kernel_shape=[3], strides=[2], pads=[1, 1])),
}


def _model(shape, attrs, storage_order, batch="N"):
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], name="pool", storage_order=storage_order, **attrs)
    dims = [batch] + list(shape[1:])
    out = [batch] + [f"o{k}" for k in range(1, len(shape))]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out),
                               helper.make_tensor_value_info("i", TensorProto.INT64, out)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("storage_order", [0, 1])
def test_maxpool_indices_match_onnx_reference(case, storage_order, target):
    shape, attrs = CASES[case]
    model = _model(shape, attrs, storage_order)
    fn = ng.onnx.load(model).compile(target="reference" if target == "oracle" else target)
    rng = np.random.default_rng(7)
    for n in (shape[0], 1):      # one compile, two batch sizes
        x = rng.standard_normal((n,) + shape[1:]).astype(np.float32)
        x.reshape(-1)[::7] = 0.5     # ties: the first maximum in the window wins
        y, i = fn(x)
        want_y, want_i = ReferenceEvaluator(model).run(None, {"x": x})
        np.testing.assert_array_equal(y, want_y)
        assert i.dtype == np.int64
        np.testing.assert_array_equal(i, want_i)


def test_indices_of_a_3d_window_are_refused_by_name():
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], name="pool", kernel_shape=[2, 2, 2])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 3, 3]),
                               helper.make_tensor_value_info("i", TensorProto.INT64, [1, 1, 3, 3, 3])])
    with pytest.raises(OnnxError, match=r"node 'pool' \(MaxPool, opset 12\): the Indices output of a 3-d"):
        ng.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)]))
