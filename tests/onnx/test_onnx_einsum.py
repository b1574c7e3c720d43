"""ONNX Einsum (a broadcast product and a sum): equations against np.einsum on the CPU
target, PyTorch's torch.einsum attention exported and matched; diagonals (a repeated
index) on every target, exact with inf and NaN off the diagonal."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

import nngraph as ng
from nngraph.onnx import OnnxError


def _einsum_model(equation, shapes):
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], name="einsum", equation=equation)
    ins = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, list(s)) for n, s in zip(names, shapes)]
    rank = len(np.einsum(equation, *[np.zeros(s) for s in shapes]).shape)
    graph = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None] * rank)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


EQUATIONS = [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ij,kj", [(3, 4), (5, 4)]),
    ("i,i->", [(6,), (6,)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ijk->kj", [(2, 3, 4)]),
    ("i,j,k->ijk", [(2,), (3,), (4,)]),
]


@pytest.mark.parametrize("equation, shapes", EQUATIONS)
def test_einsum_matches_numpy(equation, shapes):
    rng = np.random.default_rng(len(equation))
    xs = [rng.standard_normal(s) for s in shapes]
    (got,) = ng.onnx.load(_einsum_model(equation, shapes)).compile(target="cpu")(*xs)
    np.testing.assert_allclose(got, np.einsum(equation, *xs), rtol=1e-12, atol=1e-12)


DIAGONALS = [
    ("ii->i", [(4, 4)]),
    ("ii", [(3, 3)]),
    ("...ii->...i", [(2, 3, 3)]),
    ("bii,bij->bj", [(2, 3, 3), (2, 3, 4)]),
    ("iji->j", [(3, 2, 3)]),
    ("iii->i", [(3, 3, 3)]),
]


@pytest.mark.parametrize("equation, shapes", DIAGONALS)
def test_a_repeated_index_takes_the_diagonal(equation, shapes, target):
    rng = np.random.default_rng(len(equation))
    xs = [rng.standard_normal(s) for s in shapes]
    xs[0].reshape(-1)[1] = np.inf      # off the diagonal of the first operand: must not leak
    fn = ng.onnx.load(_einsum_model(equation, shapes)).compile(target="reference" if target == "oracle" else target)
    np.testing.assert_allclose(fn(*xs)[0], np.einsum(equation, *xs), rtol=1e-12, atol=1e-12)


def test_a_diagonal_of_axes_of_different_sizes_is_refused_by_name():
    node = helper.make_node("Einsum", ["x0"], ["y"], name="einsum", equation="ii->i")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x0", TensorProto.DOUBLE, [3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxError, match=r"node 'einsum' \(Einsum, opset 17\): index 'i' names axes 0 and 1"):
        ng.onnx.load(model)


class EinsumAttention(torch.nn.Module):
    def forward(self, x):
        scores = torch.einsum("btd,bsd->bts", x, x) / x.shape[-1] ** 0.5
        return torch.einsum("bts,bsd->btd", torch.softmax(scores, -1), x)


def test_pytorch_einsum_attention_imports_and_matches():
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(EinsumAttention(), (torch.randn(2, 5, 8),), f, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}}, opset_version=17)
    fn = ng.onnx.load(f.getvalue()).compile(target="cpu")
    x = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)
    with torch.no_grad():
        want = EinsumAttention()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(fn(x)[0], want, rtol=1e-5, atol=1e-6)
