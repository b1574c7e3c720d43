"""ONNX BitShift on int32 and int64 (opset 28): exact against NumPy's shifts over the
whole range of values (the int64 right shift splits values beyond float64's 2^53),
shifts out of range as ONNX's reference implementation, on the reference and cpu targets."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx.helper import np_dtype_to_tensor_dtype
from onnx.reference import ReferenceEvaluator

import nngraph as ng


def _model(dtype, n, direction):
    elem = np_dtype_to_tensor_dtype(np.dtype(dtype))
    node = helper.make_node("BitShift", ["x", "y"], ["z"], direction=direction)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, elem, [n]) for k in "xy"],
                              [helper.make_tensor_value_info("z", elem, [n])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 28)])


def _values(dtype, n, seed=0):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    x = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    x[:8] = [info.min, info.max, -1, 0, 1, 2 ** 53 + 1 if dtype == np.int64 else 12345, -(2 ** 31), 2 ** 31 - 1]
    y = rng.integers(-3, info.bits + 4, n).astype(dtype)
    return x, y


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_bit_shift_is_exact_over_the_whole_range(dtype, direction, backend):
    x, y = _values(dtype, 4000)
    model = _model(dtype, x.size, direction)
    got = ng.onnx.load(model).compile(target=backend)(x, y)[0]
    want = ReferenceEvaluator(model).run(None, {"x": x, "y": y})[0]
    np.testing.assert_array_equal(got, want)
    inside = (y >= 0) & (y < np.iinfo(dtype).bits)
    shifted = (np.left_shift if direction == "LEFT" else np.right_shift)(x[inside], y[inside])
    np.testing.assert_array_equal(got[inside], shifted)
