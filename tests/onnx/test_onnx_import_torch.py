"""Models exported from PyTorch, imported, and checked against PyTorch at batch
sizes other than the exported one (one compile serves every batch size)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nngraph as ng
from torch_models import (MLP, AttentionBlock, ConvAutoencoder, EmbeddingBag, GRUNet, LeNet, LSTMNet, RNNNet, export,
                          randomize_batchnorm)

CASES = {
    "mlp": (MLP, (8, 8)),
    "lenet": (LeNet, (1, 28, 28)),
    "attention": (AttentionBlock, (5, 16)),
    "lstm": (LSTMNet, (6, 8)),        # recurrent nodes are unrolled over their static length
    "gru": (GRUNet, (6, 8)),
    "rnn": (RNNNet, (6, 8)),
    "autoencoder": (ConvAutoencoder, (1, 16, 16)),
    "embedding": (EmbeddingBag, (6,)),    # int64 ids
}


def _inputs(name, batch, rng):
    shape = CASES[name][1]
    if name == "embedding":
        return rng.integers(0, 20, (batch,) + shape).astype(np.int64)
    return rng.standard_normal((batch,) + shape).astype(np.float32)


def _model(name):
    torch.manual_seed(0)
    cls, shape = CASES[name]
    model = cls()
    if name == "lenet":
        randomize_batchnorm(model)
    return model.eval(), shape


@pytest.mark.parametrize("compile_target", ["reference", "cpu"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_imported_model_matches_pytorch_at_other_batch_sizes(name, compile_target):
    model, shape = _model(name)
    imported = ng.onnx.load(export(model, torch.from_numpy(_inputs(name, 2, np.random.default_rng(0)))))
    assert imported.inputs[0].shape[0] == ng.Dim("N")
    fn = imported.compile(target=compile_target)
    rng = np.random.default_rng(1)
    for batch in (1, 3, 7):
        x = _inputs(name, batch, rng)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        (got,) = fn(x)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_imported_model_exports_back_and_onnxruntime_matches_pytorch(name):
    """PyTorch -> ONNX -> nngraph -> ng.onnx.export -> onnxruntime: every op the
    importer built for these models has an ONNX form again."""
    import onnxruntime as ort
    model, shape = _model(name)
    rng = np.random.default_rng(2)
    imported = ng.onnx.load(export(model, torch.from_numpy(_inputs(name, 2, rng))))
    proto = ng.onnx.export(imported.compile(target="reference"))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _inputs(name, 5, rng)
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_an_embedding_lookup_imports_as_take():
    model, shape = _model("embedding")
    imported = ng.onnx.load(export(model, torch.from_numpy(_inputs("embedding", 2, np.random.default_rng(0)))))
    ops = [n.op for n in ng.Graph(imported.inputs, imported.outputs).nodes()]
    assert "take" in ops and ops.count("matmul") == 1  # the head's only, no one-hot product


def test_batchnorm_after_conv_is_folded_into_the_conv():
    model, shape = _model("lenet")
    proto = export(model, torch.randn(2, *shape), torch_folding=False)
    assert [n.op_type for n in proto.graph.node].count("BatchNormalization") == 2
    imported = ng.onnx.load(proto)
    ops = [n.op for n in ng.Graph(imported.inputs, imported.outputs).nodes()]
    assert ops.count("conv2d") == 2
    assert "rsqrt" not in ops  # no batch_norm arithmetic left
    assert "features.1.running_mean" not in imported.params
    unfolded = ng.onnx.load(proto, fold_batchnorm=False)
    assert "rsqrt" in [n.op for n in ng.Graph(unfolded.inputs, unfolded.outputs).nodes()]
    x = np.random.default_rng(0).standard_normal((3,) + shape).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for m in (imported, unfolded):
        np.testing.assert_allclose(m.compile(target="cpu")(x)[0], want, rtol=1e-4, atol=1e-5)


def test_initializers_become_named_trainable_parameters():
    model, shape = _model("mlp")
    imported = ng.onnx.load(export(model, torch.randn(2, *shape)))
    assert sorted(imported.params) == sorted(k for k, _ in model.named_parameters())
    w = imported.params["net.1.weight"]
    assert w.trainable
    np.testing.assert_array_equal(w.value, model.net[1].weight.detach().numpy())


def test_onnx_node_names_are_the_source_locations_in_dumps():
    model, shape = _model("lenet")
    imported = ng.onnx.load(export(model, torch.randn(2, *shape)))
    text = ng.format(imported.outputs, locations=True)
    assert "# /features/features.0/Conv (Conv)" in text
    assert "# /head/head.1/Gemm (Gemm)" in text
    assert "# x (graph input)" in text


def test_onnx_node_names_are_the_locations_in_compile_dumps(tmp_path):
    model, shape = _model("mlp")
    imported = ng.onnx.load(export(model, torch.randn(2, *shape)))
    imported.compile(target="reference", dump_dir=str(tmp_path))
    texts = "".join(p.read_text() for p in sorted(tmp_path.iterdir()) if p.is_file())
    assert "/net/net.1/Gemm (Gemm)" in texts


def test_an_imported_lstm_differentiates_through_time():
    model, shape = _model("lstm")
    imported = ng.onnx.load(export(model, torch.randn(2, *shape)))
    (x,), (y,) = imported.inputs, imported.outputs
    loss = ng.sum(y * y)
    params = list(imported.params.values())
    grads = ng.compile([x], ng.grad(loss, params), target="reference")
    xs = np.random.default_rng(0).standard_normal((3,) + shape).astype(np.float32)
    tx = torch.from_numpy(xs)
    out = model(tx)
    (out * out).sum().backward()
    torch_grads = {n: p.grad.numpy() for n, p in model.named_parameters()}
    got = dict(zip(imported.params, grads(xs)))
    # the head's weights keep their PyTorch names; the recurrent ones are re-laid out by the exporter
    np.testing.assert_allclose(got["head.weight"], torch_grads["head.weight"], rtol=1e-4, atol=1e-5)
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in got.values())


def test_fine_tuning_an_imported_model_lowers_its_loss():
    model, shape = _model("mlp")
    imported = ng.onnx.load(export(model, torch.randn(2, *shape)))
    (x,), (logits,) = imported.inputs, imported.outputs
    labels = ng.placeholder(("N",), "int32", name="labels")
    loss = ng.cross_entropy(logits, labels)
    params = list(imported.params.values())
    grads = ng.grad(loss, params)
    step = ng.compile([x, labels], loss, updates={p: p - 0.5 * g for p, g in zip(params, grads)}, target="cpu")
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((32,) + shape).astype(np.float32)
    ys = rng.integers(0, 10, 32).astype(np.int32)
    losses = [float(step(xs, ys)) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]
