"""ONNX Erf and Gelu (nngraph/onnx/ops_erf.py): accuracy against math.erf and PyTorch,
the gradient, and PyTorch's nn.GELU export (Erf at opset 17, Gelu at opset 20)."""
from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

import nngraph as ng


def _unary_model(op, elem, **attrs):
    node = helper.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, ["N"])],
                              [helper.make_tensor_value_info("y", elem, ["N"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 5e-7), (np.float64, 7e-8)])
@pytest.mark.parametrize("compile_target", ["reference", "cpu"])
def test_erf_is_within_its_stated_error_of_math_erf(dtype, rtol, compile_target):
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    fn = ng.onnx.load(_unary_model("Erf", elem)).compile(target=compile_target)
    x = np.concatenate([np.linspace(-7, 7, 4001), [0.0, 1e-30, -1e-8, 3.9999, 4.0, 1e4, -np.inf, np.inf]])
    (got,) = fn(x.astype(dtype))
    want = np.array([math.erf(v) for v in x.astype(dtype).astype(np.float64)])
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)


def test_the_gradient_of_erf_is_two_over_root_pi_times_a_gaussian():
    m = ng.onnx.load(_unary_model("Erf", TensorProto.DOUBLE))
    (x,), (y,) = m.inputs, m.outputs
    (g,) = ng.compile([x], [ng.grad(ng.sum(y), x)], target="reference")(np.linspace(-3, 3, 61))
    want = 2 / math.sqrt(math.pi) * np.exp(-np.linspace(-3, 3, 61) ** 2)
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)  # the approximation's slope, not erf's exactly


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_pytorch(approximate):
    fn = ng.onnx.load(_unary_model("Gelu", TensorProto.FLOAT, approximate=approximate)).compile(target="cpu")
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32) * 4
    want = torch.nn.functional.gelu(torch.from_numpy(x), approximate=approximate).numpy()
    # both are float32 approximations: near x = -4, where 1 + erf cancels, PyTorch's
    # exact gelu is itself 8e-7 from the true value, so the two may differ by the sum
    # of their errors; the true value bounds ours (erf's 5e-7 relative times |x|/2 <= 2)
    np.testing.assert_allclose(fn(x)[0], want, rtol=1e-5, atol=2e-6)
    if approximate == "none":
        exact = np.array([v / 2 * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
        np.testing.assert_allclose(fn(x)[0], exact, rtol=1e-5, atol=1e-6)


def test_an_unknown_gelu_approximation_is_refused_by_name():
    with pytest.raises(ng.onnx.OnnxError, match=r"node 'gelu' \(Gelu, opset 20\): attribute approximate='fast'"):
        ng.onnx.load(_unary_model("Gelu", TensorProto.FLOAT, approximate="fast"))


@pytest.mark.parametrize("opset", [17, 20])
def test_pytorch_gelu_feed_forward_imports_and_matches(opset):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 8)).eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 8),), f, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}}, opset_version=opset)
    fn = ng.onnx.load(f.getvalue()).compile(target="cpu")
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(fn(x)[0], want, rtol=1e-5, atol=1e-6)
