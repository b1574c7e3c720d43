"""ONNX ConvTranspose on ng.conv_transpose2d: every attribute against onnxruntime (the
conformance suite checks the node cases against ONNX's reference implementation), on
the compiled CPU target; refused combinations by name."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import nngraph as ng
from nngraph.onnx import OnnxError


def _model(x_shape, w, bias=None, **attrs):
    inputs = ["x", "w"] + (["b"] if bias is not None else [])
    node = helper.make_node("ConvTranspose", inputs, ["y"], name="deconv", **attrs)
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(bias, "b")] if bias is not None else [])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * len(x_shape))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


CASES = {
    "plain": ((2, 3, 4, 5), (3, 2, 3, 3), {}),
    "strided_with_pads": ((2, 3, 4, 5), (3, 2, 3, 2), {"strides": [2, 3], "pads": [1, 0, 2, 1]}),
    "output_padding": ((1, 3, 4, 4), (3, 2, 3, 3), {"strides": [3, 2], "output_padding": [2, 1]}),
    "output_shape_smaller": ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [3, 2], "output_shape": [8, 6]}),
    "output_shape_larger": ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [3, 2], "output_shape": [11, 8]}),
    "output_shape_odd": ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "output_shape": [4, 6]}),
    "output_shape_valid": ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "output_shape": [6, 5],
                                                        "auto_pad": "VALID"}),
    "output_shape_same_upper": ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "output_shape": [4, 5],
                                                             "auto_pad": "SAME_UPPER"}),
    "same_upper": ((1, 2, 3, 4), (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "same_lower_odd": ((1, 2, 3, 4), (2, 3, 4, 2), {"strides": [3, 2], "auto_pad": "SAME_LOWER"}),
    "same_lower_output_shape": ((1, 2, 3, 3), (2, 1, 2, 2), {"strides": [1, 1], "auto_pad": "SAME_LOWER",
                                                             "output_shape": [4, 3]}),
    "valid": ((1, 2, 3, 4), (2, 3, 3, 3), {"strides": [2, 1], "auto_pad": "VALID"}),
    "dilated_grouped": ((2, 4, 4, 3), (4, 2, 2, 3),  # (the reference slices W by groups right only when C = M)
                        {"dilations": [2, 1], "group": 2, "strides": [1, 2]}),
    "one_d": ((2, 3, 7), (3, 4, 3), {"strides": [2], "pads": [1, 2], "output_padding": [1]}),
}


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_conv_transpose_matches_onnxruntime(case, with_bias):
    x_shape, w_shape, attrs = CASES[case]
    rng = np.random.default_rng(len(case))
    w = rng.standard_normal(w_shape).astype(np.float32)
    groups = attrs.get("group", 1)
    bias = rng.standard_normal(w_shape[1] * groups).astype(np.float32) if with_bias else None
    model = _model(x_shape, w, bias, **attrs)
    x = rng.standard_normal(x_shape).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"x": x})
    (got,) = ng.onnx.load(model).compile(target="cpu")(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_weights_of_an_imported_conv_transpose_get_gradients():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3, 3, 3))
    model = _model((1, 2, 3, 3), w.astype(np.float32), strides=[2, 2], output_padding=[1, 0])
    m = ng.onnx.load(model)
    (x,), (y,) = m.inputs, m.outputs
    xs = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    loss = ng.sum(y * y)
    (gw,) = ng.compile([x], [ng.grad(loss, m.params["w"])], target="cpu")(xs)

    def f(wv):
        ref_model = _model((1, 2, 3, 3), wv.astype(np.float32), strides=[2, 2], output_padding=[1, 0])
        return float(np.sum(ReferenceEvaluator(ref_model).run(None, {"x": xs})[0].astype(np.float64) ** 2))
    eps, k = 1e-2, (1, 2, 0, 1)
    plus, minus = w.copy(), w.copy()
    plus[k] += eps
    minus[k] -= eps
    np.testing.assert_allclose(gw[k], (f(plus) - f(minus)) / (2 * eps), rtol=2e-3)


@pytest.mark.parametrize("attrs, message", [
    ({"auto_pad": "SAME_UPPER", "pads": [1, 1, 1, 1]}, "pads together with auto_pad='SAME_UPPER'"),
    ({"output_shape": [5, 5], "pads": [1, 1, 1, 1]}, "pads together with output_shape"),
    ({"strides": [2, 2], "output_padding": [2, 0]}, "output_padding=\\[2, 0\\]"),
    ({"output_shape": [1, 2, 3]}, "output_shape=\\[1, 2, 3\\] needs 2 entries"),
    ({"auto_pad": "SAME_MIDDLE"}, "auto_pad='SAME_MIDDLE' is not supported"),
    ({"kernel_shape": [2, 2]}, "kernel_shape=\\[2, 2\\] contradicts"),
    ({"strides": [3, 2], "output_shape": [15, 9]}, "positions 0..14 of the transposed convolution's result of "
                                                   "size 12; it may reach past the end by less than the stride"),
    ({"strides": [3, 2], "output_shape": [13, 9], "auto_pad": "SAME_LOWER"}, "output_shape=\\[13, 9\\] is larger"),
])
def test_bad_attributes_are_refused_by_name(attrs, message):
    w = np.ones((2, 2, 3, 3), np.float32)
    with pytest.raises(OnnxError, match=r"node 'deconv' \(ConvTranspose, opset 17\): .*" + message):
        ng.onnx.load(_model((1, 2, 4, 4), w, **attrs))


def test_four_d_windows_are_refused():
    w = np.ones((2, 2, 3, 3, 3, 3), np.float32)
    with pytest.raises(OnnxError, match="ConvTranspose.*4-d windows are not supported"):
        ng.onnx.load(_model((1, 2, 4, 4, 4, 4), w))
