"""Gather with indices computed at run time (an embedding lookup): ng.take, differentiable
in the table (a scatter-add), negative indices counted from the end, an index out of
range refused by the call (ONNX makes it an error)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from nngraph.onnx import OnnxError

import nngraph as ng


def _gather_model(table: np.ndarray, axis: int, ids_shape, ids_type=TensorProto.INT64):
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="lookup", axis=axis)
    out_shape = list(table.shape[:axis]) + list(ids_shape) + list(table.shape[axis + 1:])
    y_type = helper.np_dtype_to_tensor_dtype(table.dtype)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("ids", ids_type, list(ids_shape))],
                              [helper.make_tensor_value_info("y", y_type, out_shape)],
                              [numpy_helper.from_array(table, "table")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("axis", [0, 1])
def test_run_time_indices_gather_rows_like_numpy_take(axis):
    rng = np.random.default_rng(0)
    table = rng.standard_normal((5, 4, 3)).astype(np.float32)
    m = ng.onnx.load(_gather_model(table, axis, ("N", 2)))
    ids = np.array([[0, -1], [3, 2], [1, 1]], np.int64) % table.shape[axis] - (axis == 1)
    (got,) = m.compile(target="cpu")(ids)
    np.testing.assert_allclose(got, np.take(table, ids, axis=axis), rtol=1e-6)


def test_the_gradient_of_a_lookup_adds_up_into_the_rows_used():
    table = np.random.default_rng(1).standard_normal((6, 3)).astype(np.float32)
    m = ng.onnx.load(_gather_model(table, 0, (4,)))
    (ids,), (y,) = m.inputs, m.outputs
    g = ng.grad(ng.sum(y), m.params["table"])
    (got,) = ng.compile([ids], [g], target="reference")(np.array([1, 1, 4, -1], np.int64))
    want = np.zeros_like(table)
    for i in (1, 1, 4, 5):
        want[i] += 1.0
    np.testing.assert_array_equal(got, want)


def test_a_lookup_is_a_take_not_a_product():
    m = ng.onnx.load(_gather_model(np.ones((5, 3), np.float32), 0, ("N",)))
    assert [n.op for n in ng.Graph(m.inputs, m.outputs).nodes() if n.op in ("take", "matmul")] == ["take"]


def test_integer_tables_and_int32_ids_gather_too():
    table = np.arange(24, dtype=np.int64).reshape(4, 6)
    m = ng.onnx.load(_gather_model(table, 1, (2, 2), TensorProto.INT32))
    ids = np.array([[5, 0], [-2, 3]], np.int32)
    (got,) = m.compile(target="cpu")(ids)
    np.testing.assert_array_equal(got, np.take(table, ids, axis=1))


@pytest.mark.parametrize("compile_target", ["reference", "cpu"])
def test_a_run_time_index_out_of_range_fails_the_call(compile_target):
    m = ng.onnx.load(_gather_model(np.ones((5, 3), np.float32), 0, ("N",)))
    fn = m.compile(target=compile_target)
    with pytest.raises(ng.InputError, match="5"):
        fn(np.array([0, 5], np.int64))


def test_known_indices_out_of_range_are_refused_at_import():
    node = helper.make_node("Gather", ["x", "ids"], ["y"], name="pick", axis=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                              [numpy_helper.from_array(np.array([1, -6], np.int64), "ids")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxError, match=r"node 'pick' \(Gather, opset 17\): indices \[1, -6\] are out of range"):
        ng.onnx.load(model)
