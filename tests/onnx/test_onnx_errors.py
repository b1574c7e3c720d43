"""Malformed and unsupported models give an ng.NNGraphError naming the node, op
type, opset and what is wrong; never a crash."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import nngraph as ng


def _model(nodes, inputs, outputs, opset=17, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_bytes_that_are_not_onnx_are_a_malformed_model(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf\xff\xff")
    with pytest.raises(ng.NNGraphError, match="malformed model"):
        ng.onnx.load(str(path))


def test_a_node_reading_an_undefined_value_is_a_malformed_model():
    m = _model([helper.make_node("Relu", ["nowhere"], ["y"], name="r")], [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(ng.NNGraphError, match="malformed model"):
        ng.onnx.load(m)


def test_an_unsupported_op_is_named_with_node_and_opset():
    m = _model([helper.make_node("Unique", ["x"], ["y"], name="the_unique")], [_vi("x", [3])], [_vi("y", [None])])
    with pytest.raises(ng.NNGraphError,
                       match=r"node 'the_unique' \(Unique, opset 17\): operator Unique is not supported"):
        ng.onnx.load(m)


def test_an_unsupported_attribute_value_is_named():
    node = helper.make_node("Pad", ["x", "p"], ["y"], name="pad1", mode="mirror")
    m = _model([node], [_vi("x", [4])], [_vi("y", [6])],
               initializers=[helper.make_tensor("p", TensorProto.INT64, [2], [1, 1])])
    with pytest.raises(ng.NNGraphError, match=r"node 'pad1' \(Pad, opset 17\): attribute mode='mirror'"):
        ng.onnx.load(m)


def test_an_attribute_the_converter_does_not_know_is_refused_by_name():
    node = helper.make_node("Relu", ["x"], ["y"], name="r", frobnicate=3)
    m = _model([node], [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(ng.NNGraphError, match="frobnicate"):
        ng.onnx.load(m)


def test_sequence_lens_over_a_dynamic_sequence_length_are_refused():
    node = helper.make_node("LSTM", ["x", "w", "r", "", "lens"], ["y"], name="lstm", hidden_size=4)
    m = _model([node], [_vi("x", ["T", 1, 3]), _vi("w", [1, 16, 3]), _vi("r", [1, 16, 4]),
                        _vi("lens", [1], TensorProto.INT32)], [_vi("y", ["T", 1, 1, 4])])
    with pytest.raises(ng.NNGraphError, match=r"node 'lstm' \(LSTM, opset 17\): sequence_lens with a dynamic"):
        ng.onnx.load(m)


def test_an_unsupported_recurrent_activation_is_named():
    node = helper.make_node("RNN", ["x", "w", "r"], ["y"], name="rnn", hidden_size=4, activations=["Softsign"])
    m = _model([node], [_vi("x", [5, 1, 3]), _vi("w", [1, 4, 3]), _vi("r", [1, 4, 4])], [_vi("y", [5, 1, 1, 4])])
    with pytest.raises(ng.NNGraphError, match=r"node 'rnn' \(RNN, opset 17\): activation 'Softsign' is not supported"):
        ng.onnx.load(m)


def test_an_unsupported_element_type_is_named():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2], TensorProto.FLOAT16)],
               [_vi("y", [2], TensorProto.FLOAT16)])
    with pytest.raises(ng.NNGraphError, match="graph input 'x' has element type FLOAT16"):
        ng.onnx.load(m)


def test_a_declared_shape_the_nodes_contradict_is_refused():
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    m = _model([node], [_vi("x", ["N", 3])], [_vi("y", ["N", 5])],
               initializers=[helper.make_tensor("w", TensorProto.FLOAT, [3, 4], np.ones(12))])
    with pytest.raises(ng.NNGraphError, match="declares size 5 on axis 1 but it computes f32\\[N,4\\]"):
        ng.onnx.load(m)


def test_a_shape_error_inside_a_node_names_the_node():
    node = helper.make_node("Add", ["x", "z"], ["y"], name="bad_add")
    m = _model([node], [_vi("x", [2, 3]), _vi("z", [4])], [_vi("y", [2, 3])])
    with pytest.raises(ng.NNGraphError, match=r"node 'bad_add' \(Add, opset 17\): ShapeError: add: cannot broadcast"):
        ng.onnx.load(m)


def test_an_old_opset_outside_a_converters_range_is_named():
    node = helper.make_node("Dropout", ["x"], ["y"], name="d")
    m = _model([node], [_vi("x", [2])], [_vi("y", [2])], opset=5)
    with pytest.raises(ng.NNGraphError, match=r"node 'd' \(Dropout, opset 5\): Dropout at opset 5 is not supported"):
        ng.onnx.load(m)


def test_every_claimed_op_lists_an_opset_range():
    ops = ng.onnx.SUPPORTED_OPS
    light = {"Conv", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Gemm", "Softmax", "Reshape", "Concat",
             "Dropout", "ConstantOfShape", "LRN", "BatchNormalization", "Sum", "Mul", "Add", "Unsqueeze", "Transpose"}
    assert light <= set(ops)
    assert {"MatMul", "LayerNormalization", "Flatten", "Gather"} <= set(ops)
    assert all(1 <= lo <= hi for lo, hi in ops.values())
    assert {"LSTM", "GRU", "RNN"} <= set(ops)
    assert {"ConvTranspose", "Resize", "Erf", "Gelu", "Einsum", "ScatterND", "GatherND"} <= set(ops)
