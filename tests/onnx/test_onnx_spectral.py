"""ONNX DFT and STFT (products with cosine and sine matrices, in float64): every
setting against NumPy's FFT in float64 (forward, inverse, one-sided, the one-sided
inverse, dft_length cutting and padding, real and complex signals), STFT against
onnxruntime; the gradient (the transform is linear) by central differences."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import nngraph as ng
from nngraph.onnx import OnnxError
from onnx_checks import fd_gradients, ort_run


def _dft_model(x_shape, y_shape, dtype=np.float64, length=None, axis=1, **attrs):
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    inits = [numpy_helper.from_array(np.asarray(axis, np.int64), "axis")]
    if length is not None:
        inits.append(numpy_helper.from_array(np.asarray(length, np.int64), "n"))
    node = helper.make_node("DFT", ["x", "n" if length is not None else "", "axis"], ["y"], name="dft", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, list(x_shape))],
                              [helper.make_tensor_value_info("y", elem, list(y_shape))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _as_complex(x):
    return x[..., 0] + 1j * x[..., 1] if x.shape[-1] == 2 else x[..., 0]


def _pairs(z):
    return np.stack([z.real, z.imag], -1)


CASES = {  # name: (components, length, inverse, onesided)
    "forward_real": (1, None, 0, 0),
    "forward_complex": (2, None, 0, 0),
    "inverse": (2, None, 1, 0),
    "rfft": (1, None, 0, 1),
    "padded": (2, 11, 0, 0),
    "cut": (1, 5, 0, 0),
    "inverse_cut": (2, 6, 1, 0),
}


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_dft_matches_numpy(case, backend):
    comps, length, inverse, onesided = CASES[case]
    x = np.random.default_rng(0).standard_normal((2, 8, 3, comps))
    n = length or 8
    z = _as_complex(x)
    want = (np.fft.ifft if inverse else np.fft.fft)(z, n=n, axis=1)
    if onesided:
        want = want[:, :n // 2 + 1]
    model = _dft_model(x.shape, want.shape + (2,), length=length, inverse=inverse, onesided=onesided)
    got = ng.onnx.load(model).compile(target=backend)(x)[0]
    np.testing.assert_allclose(got, _pairs(want), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [None, 8, 9, 4])
def test_the_one_sided_inverse_is_numpys_irfft(n):
    x = np.random.default_rng(1).standard_normal((2, 5, 3, 2))
    out_n = n or 8
    want = np.fft.irfft(_as_complex(x), n=out_n, axis=1)
    model = _dft_model(x.shape, (2, out_n, 3, 1), length=n, inverse=1, onesided=1)
    got = ng.onnx.load(model).compile(target="cpu")(x)[0]
    np.testing.assert_allclose(got[..., 0], want, rtol=1e-12, atol=1e-12)


def test_float32_dft_is_rounded_once_from_float64():
    x = np.random.default_rng(2).standard_normal((1, 64, 2, 2)).astype(np.float32)
    model = _dft_model(x.shape, x.shape, np.float32, axis=1)
    got = ng.onnx.load(model).compile(target="cpu")(x)[0]
    want = _pairs(np.fft.fft(_as_complex(x.astype(np.float64)), axis=1)).astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_dft_gradients_match_central_differences():
    x = np.random.default_rng(3).standard_normal((1, 5, 2, 2))
    fd_gradients(_dft_model(x.shape, (1, 3, 2, 2), onesided=1), {"x": x})


def test_a_dft_over_the_component_axis_is_refused_by_name():
    with pytest.raises(OnnxError, match=r"node 'dft' \(DFT, opset 20\): axis 3 must name a signal axis"):
        ng.onnx.load(_dft_model((1, 4, 2, 2), (1, 4, 2, 2), axis=3))


@pytest.mark.parametrize("with_window", [False, True])
def test_stft_matches_onnxruntime(with_window):
    signal = np.random.default_rng(4).standard_normal((2, 64, 1)).astype(np.float32)
    inits = {"step": np.asarray(8, np.int64), "size": np.asarray(16, np.int64)}
    if with_window:
        inits["window"] = np.hanning(16).astype(np.float32)
    names = ["signal", "step", "window" if with_window else "", "size"]
    node = helper.make_node("STFT", names, ["y"], name="stft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("signal", TensorProto.FLOAT, [2, 64, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 7, 9, 2])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    got = ng.onnx.load(model).compile(target="cpu")(signal)[0]
    np.testing.assert_allclose(got, ort_run(model, {"signal": signal})[0], rtol=1e-4, atol=1e-4)
