"""LSTM, GRU and RNN with a dynamic sequence length import as an ng.scan over time
(one import for every length; static lengths stay unrolled): matched against PyTorch
at several lengths and batch sizes from one compile, and differentiated through time,
on the reference and cpu targets."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

import nngraph as ng
from torch_models import GRUNet, LSTMNet, RNNNet

MODELS = {"lstm": LSTMNet, "gru": GRUNet, "rnn": RNNNet}  # batch_first, classify from the last step


def _import(name, dynamic_time=True):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    axes = {0: "N", 1: "T"} if dynamic_time else {0: "N"}
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 6, 8),), f, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": {0: "N"}}, opset_version=17)
    return model, ng.onnx.load(f.getvalue())


def _ops(imported):
    return [n.op for n in ng.Graph(imported.inputs, imported.outputs).nodes()]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_dynamic_length_recurrent_model_matches_pytorch_at_every_length(name, backend):
    model, imported = _import(name)
    assert imported.inputs[0].shape[1] == ng.Dim("T")
    assert "scan" in _ops(imported)
    fn = imported.compile(target=backend)
    rng = np.random.default_rng(0)
    for batch, steps in ((1, 1), (4, 3), (2, 11)):
        x = rng.standard_normal((batch, steps, 8)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(fn(x)[0], want, rtol=1e-5, atol=1e-6)


def test_a_static_length_stays_unrolled():
    _, imported = _import("gru", dynamic_time=False)
    assert "scan" not in _ops(imported)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_the_gradient_through_a_scanned_lstm_matches_pytorch(backend):
    model, imported = _import("lstm")
    (x,), (y,) = imported.inputs, imported.outputs
    params = list(imported.params.values())
    grads = ng.compile([x], ng.grad(ng.sum(y * y), params), target=backend)
    xs = np.random.default_rng(1).standard_normal((3, 5, 8)).astype(np.float32)
    out = model(torch.from_numpy(xs))
    (out * out).sum().backward()
    got = dict(zip(imported.params, grads(xs)))
    for name, p in model.named_parameters():
        if name in got:  # the head keeps its name; the LSTM weights are re-laid out by the exporter
            np.testing.assert_allclose(got[name], p.grad.numpy(), rtol=1e-4, atol=1e-6)
    torch_w = model.rnn.weight_ih_l0.grad.numpy()  # [4H, I] in PyTorch's gate order i, f, g, o
    (onnx_w,) = [g for g in got.values() if g.shape == (1,) + torch_w.shape]  # ONNX's W: [1, 4H, I]
    i, o, f, c = onnx_w.reshape(4, -1, torch_w.shape[1])  # ONNX's gate order i, o, f, c
    np.testing.assert_allclose(np.concatenate([i, f, c, o]), torch_w, rtol=1e-4, atol=1e-6)
