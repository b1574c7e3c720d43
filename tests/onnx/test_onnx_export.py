"""ng.onnx.export: onnxruntime runs the exported model with nngraph's results."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import nngraph as ng
from nngraph.onnx import OnnxError


def _ort(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _check(fn, *arrays, rtol=1e-5, atol=1e-5):
    model = ng.onnx.export(fn)
    sess = _ort(model)
    feeds = {i.name: a for i, a in zip(sess.get_inputs(), arrays)}
    got = sess.run(None, feeds)
    want = fn(*arrays)
    want = want if isinstance(want, (list, tuple)) else [want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def test_mlp_with_dynamic_batch_round_trips_through_onnxruntime():
    rng = np.random.default_rng(0)
    x = ng.placeholder(("N", 12), name="x")
    w1 = ng.parameter(rng.standard_normal((12, 16)).astype(np.float32), name="w1")
    b1 = ng.parameter(rng.standard_normal(16).astype(np.float32), name="b1")
    w2 = ng.parameter(rng.standard_normal((16, 5)).astype(np.float32), name="w2")
    h = ng.tanh(x @ w1 + b1)
    probs = ng.softmax(ng.relu(h) @ w2)
    fn = ng.compile([x], [probs, ng.argmax(probs, -1), ng.layer_norm(h), h.mean(0)], target="reference")
    for batch in (1, 4):
        _check(fn, rng.standard_normal((batch, 12)).astype(np.float32))


def test_cnn_round_trips_through_onnxruntime():
    rng = np.random.default_rng(1)
    x = ng.placeholder(("N", 2, 10, 10), name="images")
    w = ng.parameter(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), name="w")
    y = ng.conv2d(x, w, stride=1, padding=((1, 0), (1, 1)))
    y = ng.max_pool2d(ng.relu(y), 2)
    z = ng.avg_pool2d(y, 3, 1, 1)
    flat = ng.reshape(z, (x.shape[0], -1))
    out = ng.log_softmax(flat) + ng.pad(flat, [(0, 0), (0, 0)]) * 0.5
    fn = ng.compile([x], [out, flat[:, 2:7], ng.where(flat > 0.1, flat, ng.exp(flat))], target="reference")
    _check(fn, rng.standard_normal((3, 2, 10, 10)).astype(np.float32), rtol=1e-4)


def test_an_nn_model_exports_its_inference_graph():
    rng = np.random.default_rng(2)
    model = ng.nn.Sequential([ng.nn.Dense(8, activation="relu"), ng.nn.Dropout(0.5), ng.nn.Dense(3)],
                             input_shape=(6,))
    model.compile(optimizer=ng.optim.SGD(0.1), loss="cross_entropy", target="reference")
    xs = rng.standard_normal((5, 6)).astype(np.float32)
    sess = _ort(ng.onnx.export(model))
    (got,) = sess.run(None, {sess.get_inputs()[0].name: xs})
    np.testing.assert_allclose(got, model.predict(xs), rtol=1e-5, atol=1e-6)


def test_exported_model_imports_back():
    rng = np.random.default_rng(3)
    x = ng.placeholder(("N", 4), name="x")
    w = ng.parameter(rng.standard_normal((4, 3)).astype(np.float32), name="w")
    fn = ng.compile([x], ng.sigmoid(x @ w), target="reference")
    back = ng.onnx.load(ng.onnx.export(fn))
    xs = rng.standard_normal((6, 4)).astype(np.float32)
    np.testing.assert_allclose(back.compile(target="reference")(xs)[0], fn(xs), rtol=1e-6)


def test_ops_without_an_onnx_form_are_refused_by_name():
    x = ng.placeholder(("N", 4), name="x")
    loss = ng.sum(x * x)
    fn = ng.compile([x], ng.grad(loss, x) + ng.dropout(x, 0.5, seed=0), target="reference")
    with pytest.raises(OnnxError, match="op uniform"):
        ng.onnx.export(fn)


def test_a_training_step_is_refused():
    x = ng.placeholder((2,), name="x")
    w = ng.parameter(np.ones(2, np.float32), name="w")
    loss = ng.sum(x * w)
    fn = ng.compile([x], loss, updates={w: w - 0.1 * ng.grad(loss, w)}, target="reference")
    with pytest.raises(OnnxError, match="updates parameters"):
        ng.onnx.export(fn)


def test_an_export_carries_the_oldest_ir_version_of_its_opset():
    """A runtime older than the onnx package (onnxruntime < 1.20 refuses IR 14, which
    onnx 1.23 writes by default) loads the file: its IR version is the opset's own."""
    from onnx import helper
    x = ng.placeholder(("N", 3), name="x")
    fn = ng.compile([x], ng.relu(x), target="reference")
    for opset in (13, 17):
        model = ng.onnx.export(fn, opset=opset)
        assert model.ir_version == helper.find_min_ir_version_for([helper.make_opsetid("", opset)]) < 10
        np.testing.assert_array_equal(_ort(model).run(None, {"x": np.array([[-1.0, 0.0, 2.0]], np.float32)})[0],
                                      [[0.0, 0.0, 2.0]])
