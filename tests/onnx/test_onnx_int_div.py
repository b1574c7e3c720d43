"""ONNX integer Div truncates toward zero (C's rule) and is exact over int64: values near
2**62, which a float64 detour would round, and negative operands (where NumPy's // floors),
against onnxruntime on every target."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.helper import np_dtype_to_tensor_dtype

import nngraph as ng
from helpers import run


def _div_model(dtype, n, opset=13):
    elem = np_dtype_to_tensor_dtype(np.dtype(dtype))
    node = helper.make_node("Div", ["a", "b"], ["q"])
    graph = helper.make_graph([node], "int_div", [helper.make_tensor_value_info(k, elem, [n]) for k in "ab"],
                              [helper.make_tensor_value_info("q", elem, [n])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _operands(dtype):
    """Nonzero divisors (onnxruntime's integer Div by 0 is undefined behaviour)."""
    big = 2 ** 62 + 7 if dtype == np.int64 else 2 ** 30 + 7
    odd = 2 ** 53 + 1 if dtype == np.int64 else 2 ** 24 + 1
    a = [big, -big, big + 2, -(big + 2), 7, -7, 7, -7, big - 1, odd, -odd, 0]
    b = [3, 3, -5, -5, 2, 2, -2, -2, big, 2, -3, -4]
    rng = np.random.default_rng(0)
    a += list(rng.integers(-big, big, 20))
    b += [int(v) or 1 for v in rng.integers(-2 ** 20, 2 ** 20, 20)]
    return np.array(a, dtype), np.array(b, dtype)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_int_div_matches_onnxruntime_exactly(dtype, target):
    a, b = _operands(dtype)
    model = _div_model(dtype, a.size)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"a": a, "b": b})[0]
    imported = ng.onnx.load(model)
    got = run(imported.outputs, dict(zip(imported.inputs, (a, b))), target)[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[:8], [a[0] // 3, -(a[0] // 3), -(a[2] // 5), a[2] // 5, 3, -3, -3, 3])


def test_legacy_int_div_truncates_toward_zero():
    """Opset 6's Div (no implicit broadcasting) takes the same rule."""
    a, b = np.array([-7, 7, -(2 ** 62 + 7)], np.int64), np.array([2, -2, 3], np.int64)
    got = ng.onnx.load(_div_model(np.int64, 3, opset=6)).compile(target="reference")(a, b)[0]
    np.testing.assert_array_equal(got, [-3, -3, -((2 ** 62 + 7) // 3)])
