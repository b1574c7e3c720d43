"""Gather with indices computed at run time (an embedding lookup): a one-hot product,
differentiable in the table, with negative indices counted from the end."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import nngraph as ng


def _gather_model(table: np.ndarray, axis: int, ids_shape):
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="lookup", axis=axis)
    out_shape = list(table.shape[:axis]) + list(ids_shape) + list(table.shape[axis + 1:])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, list(ids_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
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
