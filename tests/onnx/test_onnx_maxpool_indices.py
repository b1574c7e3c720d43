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


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("storage_order", [0, 1])
def test_maxpool_indices_export_round_trip(case, storage_order):
    """ng.onnx.export writes max_pool2d_select as MaxPool's Indices gathered from the
    selected tensor: onnxruntime, ONNX's reference evaluator and the model imported back
    give the imported model's values and indices (ties included), at two batch sizes."""
    ort = pytest.importorskip("onnxruntime")
    shape, attrs = CASES[case]
    fn = ng.onnx.load(_model(shape, attrs, storage_order)).compile(target="reference")
    exported = ng.onnx.export(fn)
    assert any(len(node.output) == 2 for node in exported.graph.node if node.op_type == "MaxPool")
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    back = ng.onnx.load(exported).compile(target="reference")
    rng = np.random.default_rng(8)
    for n in (shape[0], 1):
        x = rng.standard_normal((n,) + shape[1:]).astype(np.float32)
        x.reshape(-1)[::5] = 0.5
        want = fn(x)
        feeds = {session.get_inputs()[0].name: x}
        for got in (session.run(None, feeds), ReferenceEvaluator(exported).run(None, feeds), back(x)):
            for g, w in zip(got, want):
                assert g.dtype == w.dtype
                np.testing.assert_array_equal(g, w)


def test_selecting_from_an_integer_pool_is_refused_by_name():
    """MaxPool's Indices output takes float inputs only: an int32 max_pool2d_select is
    refused, naming the op and the dtype."""
    x = ng.placeholder((1, 1, 4, 4), "int32", name="x")
    fn = ng.compile([x], [ng.ops.pool.max_pool2d_select(x, x, (2, 2))], target="reference")
    with pytest.raises(OnnxError, match=r"max_pool2d_select of a i32\[1,1,4,4\] input .* takes float inputs"):
        ng.onnx.export(fn)


def test_range_to_a_dynamic_size_must_start_at_zero_by_ones():
    """ng.onnx.load reads a Range whose limit is a dynamic size (how ng.onnx.export writes
    an iota over the batch) as an iota; another start or step over such a limit is
    refused by name."""
    def model(start):
        nodes = [helper.make_node("Shape", ["x"], ["s"]),
                 helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
                 helper.make_node("Range", ["start", "n", "one"], ["y"], name="range")]
        inits = [helper.make_tensor("zero", TensorProto.INT64, [], [0]),
                 helper.make_tensor("start", TensorProto.INT64, [], [start]),
                 helper.make_tensor("one", TensorProto.INT64, [], [1])]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                                  [helper.make_tensor_value_info("y", TensorProto.INT64, ["N"])], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    fn = ng.onnx.load(model(0)).compile(target="reference")
    for n in (3, 1, 0):
        np.testing.assert_array_equal(fn(np.zeros((n, 2), np.float32))[0], np.arange(n))
    with pytest.raises(OnnxError, match=r"node 'range' \(Range, opset 17\): a Range to the dynamic size N must "
                                        r"start at 0 by steps of 1, got start 2"):
        ng.onnx.load(model(2))
