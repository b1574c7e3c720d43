"""ONNX GatherND (on ng.take) against NumPy; ScatterND and ScatterElements on ng.scatter_add: PyTorch's scatter and index
assignment exported and matched on the CPU target, the reductions against a NumPy
loop (reduction='mul' on every target); an out-of-range index fails the call; an unknown
reduction is refused by name."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import nngraph as ng
from nngraph.onnx import OnnxError

class Scatter(torch.nn.Module):
    def forward(self, x):
        return x.scatter(1, torch.tensor([[2, 0, 4], [1, 3, 0]]), x[:, :3] * 10)


class IndexAssign(torch.nn.Module):
    def forward(self, x):
        y = x.clone()
        y[torch.tensor([3, 0])] = x[:2] * -2.0
        return y


def _check(module, x):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), f, dynamo=False, input_names=["x"], opset_version=18)
    fn = ng.onnx.load(f.getvalue()).compile(target="cpu")
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(fn(x)[0], want, rtol=1e-6)


def test_pytorch_scatter_matches():
    _check(Scatter().eval(), np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32))


@pytest.mark.parametrize("reduction, combine", [("add", np.add), ("max", np.maximum), ("min", np.minimum),
                                                ("mul", np.multiply)])
def test_scatter_elements_reductions_combine_repeated_indices(reduction, combine, target="cpu"):
    node = helper.make_node("ScatterElements", ["data", "ids", "upd"], ["y"], axis=1, reduction=reduction)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [2, 5]),
                      helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3]),
                      helper.make_tensor_value_info("upd", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])])
    fn = ng.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])).compile(target=target)
    rng = np.random.default_rng(2)
    data, upd = rng.standard_normal((2, 5)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)
    ids = np.array([[2, 0, 2], [-1, 1, 1]])
    want = data.copy()
    for i, j in np.ndindex(*ids.shape):
        want[i, ids[i, j]] = combine(want[i, ids[i, j]], upd[i, j])
    np.testing.assert_allclose(fn(data, ids, upd)[0], want, rtol=1e-6)


def test_pytorch_index_assignment_matches():
    _check(IndexAssign().eval(), np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32))


def _scatter_nd_model(reduction="none"):
    node = helper.make_node("ScatterND", ["data", "ids", "upd"], ["y"], name="scatter", reduction=reduction)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [4, 2]),
                      helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2])],
        [numpy_helper.from_array(np.ones((2, 2), np.float32), "upd")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_an_index_out_of_range_fails_the_call():
    fn = ng.onnx.load(_scatter_nd_model()).compile(target="cpu")
    np.testing.assert_array_equal(fn(np.zeros((4, 2), np.float32), np.array([[-1], [1]]))[0],
                                  [[0, 0], [1, 1], [0, 0], [1, 1]])
    with pytest.raises(ng.InputError):
        fn(np.zeros((4, 2), np.float32), np.array([[4], [1]]))


def test_scatter_elements_mul_on_every_target(target):
    test_scatter_elements_reductions_combine_repeated_indices("mul", np.multiply,
                                                              "reference" if target == "oracle" else target)


def test_scatter_nd_mul_with_repeated_indices_matches_a_loop(target):
    node = helper.make_node("ScatterND", ["data", "ids", "upd"], ["y"], reduction="mul")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [4, 3]),
                      helper.make_tensor_value_info("ids", TensorProto.INT64, [3, 1]),
                      helper.make_tensor_value_info("upd", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    fn = ng.onnx.load(model).compile(target="reference" if target == "oracle" else target)
    rng = np.random.default_rng(5)
    data, upd = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 3)).astype(np.float32)
    ids = np.array([[2], [-4], [2]])
    want = data.copy()
    for j in range(3):
        want[ids[j, 0]] *= upd[j]
    np.testing.assert_allclose(fn(data, ids, upd)[0], want, rtol=1e-6)


def test_an_unknown_reduction_is_refused_by_name():
    with pytest.raises(OnnxError, match=r"node 'scatter' \(ScatterND, opset 18\): attribute reduction='prod'"):
        ng.onnx.load(_scatter_nd_model("prod"))


def test_gather_nd_with_a_batch_axis_matches_numpy():
    node = helper.make_node("GatherND", ["data", "ids"], ["y"], batch_dims=1)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [2, 3, 4, 5]),
                      helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 6, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 5])])
    fn = ng.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])).compile(target="cpu")
    rng = np.random.default_rng(3)
    data = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    ids = np.stack([rng.integers(-3, 3, (2, 6)), rng.integers(-4, 4, (2, 6))], -1)
    want = np.stack([data[b][tuple(ids[b].T)] for b in range(2)])
    np.testing.assert_array_equal(fn(data, ids)[0], want)


@pytest.mark.parametrize("mode,starts", [("linear", [0, 2, 1]), ("circular", [3, 0, 2])])
def test_tensor_scatter_matches_onnx_reference(mode, starts):
    from onnx.reference import ReferenceEvaluator
    node = helper.make_node("TensorScatter", ["past", "update", "idx"], ["present"], mode=mode, axis=2)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("past", TensorProto.FLOAT, [3, 2, 4, 5]),
                      helper.make_tensor_value_info("update", TensorProto.FLOAT, [3, 2, 2, 5])],
        [helper.make_tensor_value_info("present", TensorProto.FLOAT, [3, 2, 4, 5])],
        [numpy_helper.from_array(np.asarray(starts, np.int64), "idx")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24)])
    rng = np.random.default_rng(0)
    past = rng.standard_normal((3, 2, 4, 5)).astype(np.float32)
    update = rng.standard_normal((3, 2, 2, 5)).astype(np.float32)
    got = ng.onnx.load(model).compile(target="cpu")(past, update)[0]
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"past": past, "update": update})[0])
