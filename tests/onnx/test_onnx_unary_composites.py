"""ONNX unary operators nngraph composes from its primitives (Round, Asinh, Acosh,
Atanh, Shrink): against NumPy on both CPU targets, at the arguments where a naive
formula loses precision (halves, tiny and large values)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import nngraph as ng


def _fn(op, dtype, target, **attrs):
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    node = helper.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, ["N"])],
                              [helper.make_tensor_value_info("y", elem, ["N"])])
    return ng.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])).compile(target=target)


TARGETS = ["reference", "cpu"]


@pytest.mark.parametrize("compile_target", TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_takes_halves_to_even(dtype, compile_target):
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999, -3.7, 0.0, 7.5, 1e6 + 0.5, -1e6 - 0.5], dtype)
    np.testing.assert_array_equal(_fn("Round", dtype, compile_target)(x)[0], np.round(x))


@pytest.mark.parametrize("compile_target", TARGETS)
@pytest.mark.parametrize("op, ref, x", [
    ("Asinh", np.arcsinh, [-1e4, -3.0, -1e-6, 0.0, 1e-20, 2e-4, 0.5, 30.0]),
    ("Acosh", np.arccosh, [1.0, 1.0 + 1e-6, 1.5, 10.0, 1e4]),
    ("Atanh", np.arctanh, [-0.999, -0.5, -1e-7, 0.0, 3e-5, 0.25, 0.9]),
])
def test_inverse_hyperbolics_match_numpy(op, ref, x, compile_target):
    x = np.asarray(x, np.float64)
    np.testing.assert_allclose(_fn(op, np.float64, compile_target)(x)[0], ref(x), rtol=1e-12, atol=0)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(_fn(op, np.float32, compile_target)(x32)[0], ref(x32.astype(np.float64)),
                               rtol=2e-6, atol=0)


@pytest.mark.parametrize("compile_target", TARGETS)
def test_shrink_moves_values_outside_lambd_towards_zero_by_bias(compile_target):
    x = np.linspace(-3, 3, 13)
    got = _fn("Shrink", np.float64, compile_target, lambd=1.5, bias=0.25)(x)[0]
    np.testing.assert_allclose(got, np.where(x < -1.5, x + 0.25, np.where(x > 1.5, x - 0.25, 0.0)))
