"""MultiHeadAttention: outputs and gradients (input and every weight) against
PyTorch's nn.MultiheadAttention with copied weights, self- and cross-attention, with
and without the causal mask; the graph function by finite differences in float64;
the layer inside a functional model (called on three inputs) trains and saves."""
import numpy as np
import pytest

import nngraph as ng
from nngraph.nn.attention import multi_head_attention, scaled_dot_product_attention

import helpers

WEIGHTS = [f"{p}_{k}" for p in ("query", "key", "value", "output") for k in ("kernel", "bias")]


def _torch_copy(torch, layer, kdim, vdim):
    """nn.MultiheadAttention holding the layer's weights (PyTorch's are transposed)."""
    p = {k: v.value for k, v in layer.params.items()}
    e = p["query_kernel"].shape[1]
    ref = torch.nn.MultiheadAttention(e, layer.heads, batch_first=True, kdim=kdim, vdim=vdim)
    with torch.no_grad():
        if ref._qkv_same_embed_dim:
            ref.in_proj_weight.copy_(torch.tensor(np.concatenate([p[f"{n}_kernel"].T for n in ("query", "key", "value")])))
        else:
            for n in ("q", "k", "v"):
                name = {"q": "query", "k": "key", "v": "value"}[n]
                getattr(ref, f"{n}_proj_weight").copy_(torch.tensor(p[f"{name}_kernel"].T))
        ref.in_proj_bias.copy_(torch.tensor(np.concatenate([p[f"{n}_bias"] for n in ("query", "key", "value")])))
        ref.out_proj.weight.copy_(torch.tensor(p["output_kernel"].T))
        ref.out_proj.bias.copy_(torch.tensor(p["output_bias"]))
    return ref


def _torch_grads(torch, ref):
    """The gradients of ref's weights in our layout and names."""
    e = ref.embed_dim
    if ref._qkv_same_embed_dim:
        w = ref.in_proj_weight.grad.numpy()
        kernels = [w[:e].T, w[e:2 * e].T, w[2 * e:].T]
    else:
        kernels = [getattr(ref, f"{n}_proj_weight").grad.numpy().T for n in ("q", "k", "v")]
    b = ref.in_proj_bias.grad.numpy()
    out = {}
    for i, n in enumerate(("query", "key", "value")):
        out[f"{n}_kernel"], out[f"{n}_bias"] = kernels[i], b[i * e:(i + 1) * e]
    out["output_kernel"], out["output_bias"] = ref.out_proj.weight.grad.numpy().T, ref.out_proj.bias.grad.numpy()
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_attention_matches_pytorch_values_and_gradients(target, causal, cross):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    N, Tq, Tk, F, Fk, Fv = 2, 5, (4 if cross else 5), 8, (6 if cross else 8), (3 if cross else 8)
    Q = rng.standard_normal((N, Tq, F)).astype(np.float32)
    K = rng.standard_normal((N, Tk, Fk)).astype(np.float32) if cross else Q
    V = rng.standard_normal((N, Tk, Fv)).astype(np.float32) if cross else Q
    layer = ng.nn.MultiHeadAttention(2, 4, causal=causal, seed=4)
    q = ng.placeholder(("N", "T", F), name="q")
    k = ng.placeholder(("N", "S", Fk), name="k") if cross else q
    v = ng.placeholder(("N", "S", Fv), name="v") if cross else q
    y = layer(q, v, k)
    for n in WEIGHTS:  # non-zero biases, so that their gradients and uses are checked too
        layer.params[n].value = rng.uniform(-0.5, 0.5, layer.params[n].value.shape).astype(np.float32)
    up = rng.standard_normal((N, Tq, F)).astype(np.float32)
    u = ng.placeholder(("N", "T", F), name="up")
    inputs = [q, k, v] if cross else [q]
    grads = ng.grad(ng.sum(y * u), inputs + [layer.params[n] for n in WEIGHTS])
    got = helpers.compile(inputs + [u], [y] + grads, target=target)(*([Q, K, V] if cross else [Q]), up)

    ref = _torch_copy(torch, layer, Fk, Fv)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (Q, K, V))
    if not cross:
        tk = tv = tq
    mask = torch.triu(torch.ones(Tq, Tk, dtype=torch.bool), 1) if causal else None
    ty = ref(tq, tk, tv, attn_mask=mask, need_weights=False)[0]
    (ty * torch.tensor(up)).sum().backward()
    expected = [ty.detach().numpy(), tq.grad.numpy()] + ([tk.grad.numpy(), tv.grad.numpy()] if cross else [])
    tw = _torch_grads(torch, ref)
    expected += [tw[n] for n in WEIGHTS]
    names = ["y", "dq"] + (["dk", "dv"] if cross else []) + WEIGHTS
    for name, a, b in zip(names, got, expected):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=name)


def test_causal_mask_hides_the_future():
    """Changing the last query step's inputs changes only the last output step."""
    layer = ng.nn.MultiHeadAttention(1, 3, causal=True, seed=0)
    x = ng.placeholder(("N", "T", 4), name="x")
    fn = ng.compile([x], layer(x), target="reference")
    X = helpers.rand((1, 6, 4), 1, "float32")
    X2 = X.copy()
    X2[:, -1] += 1.0
    a, b = fn(X), fn(X2)
    np.testing.assert_array_equal(a[:, :-1], b[:, :-1])
    assert not np.allclose(a[:, -1], b[:, -1])


def test_scaled_dot_product_attention_against_numpy():
    rng = np.random.default_rng(0)
    Q, K, V = (rng.standard_normal(s) for s in ((2, 3, 4), (2, 5, 4), (2, 5, 2)))
    q, k, v = (ng.placeholder(a.shape, "float64") for a in (Q, K, V))
    for causal in (False, True):
        got = helpers.run(scaled_dot_product_attention(q, k, v, causal), {q: Q, k: K, v: V})
        s = Q @ K.transpose(0, 2, 1) / 2.0
        if causal:
            s = np.where(np.tril(np.ones((3, 5), bool)), s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        np.testing.assert_allclose(got, (w / w.sum(-1, keepdims=True)) @ V, rtol=1e-12)


@pytest.mark.parametrize("tgt", ["oracle", "reference", "cpu"])  # hundreds of calls: too slow interpreted
@pytest.mark.parametrize("causal", [False, True])
def test_attention_gradients_by_finite_differences(tgt, causal):
    rng = np.random.default_rng(5)
    h, dk, F, Fk = 2, 2, 3, 2
    shapes = [(2, 3, F), (2, 4, Fk), (2, 4, F),                   # query, value, key
              (F, h * dk), (h * dk,), (F, h * dk), (h * dk,), (Fk, h * dk), (h * dk,), (h * dk, F), (F,)]
    arrays = [rng.standard_normal(s) for s in shapes]

    def build(q, v, k, *ws):
        return multi_head_attention(q, v, k, dict(zip(WEIGHTS, ws)), h, causal)
    helpers.check_grad(build, arrays, tgt, max_full=40, rtol=1e-6, atol=1e-8)


def test_attention_in_a_functional_model_trains_and_saves(tmp_path):
    rng = np.random.default_rng(1)
    Xq, Xv = rng.standard_normal((32, 3, 4)).astype(np.float32), rng.standard_normal((32, 5, 6)).astype(np.float32)
    Y = Xv.mean(axis=1)[:, None, :4].repeat(3, axis=1)   # a target attention can reach
    q, v = ng.nn.Input((3, 4), name="q"), ng.nn.Input((5, 6), name="v")
    out = ng.nn.MultiHeadAttention(2, 4, name="attn", seed=0)(q, v)
    model = ng.nn.Model([q, v], out)
    assert [layer.name for layer in model.layers] == ["attn"]
    model.compile(ng.optim.Adam(0.02), "mse", target="reference")
    hist = model.fit([Xq, Xv], Y, epochs=10, batch_size=8, verbose=0)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    model.save(str(tmp_path / "m.npz"))
    back = ng.nn.load_model(str(tmp_path / "m.npz"))
    np.testing.assert_allclose(back.predict([Xq, Xv]), model.predict([Xq, Xv]), rtol=1e-6)


def test_attention_errors_name_the_input():
    layer = ng.nn.MultiHeadAttention(2, 4)
    with pytest.raises(ng.ShapeError, match=r"query must be \[batch, time, features\].*f32\[N,4\]"):
        layer(ng.placeholder(("N", 4), name="x"))
    q, k, v = ng.placeholder((2, 3, 4)), ng.placeholder((2, 5, 4)), ng.placeholder((2, 6, 4))
    with pytest.raises(ng.ShapeError, match="key and value must have the same length"):
        layer(q, v, k)
    layer(q)
    with pytest.raises(ng.ShapeError, match=r"was built for .* features \(4, 4, 4\), now called with \(4, 5, 5\)"):
        layer(q, ng.placeholder((2, 3, 5)))


def test_a_transformer_block_serves_every_sequence_length():
    """Dense, LayerNorm and attention build from the feature axis only, so a block on
    [N, T, F] with a dynamic T compiles once and runs on any length."""
    x = ng.placeholder(("N", "T", 8), name="x")
    attn, norm, ff = ng.nn.MultiHeadAttention(2, 4, causal=True, seed=0), ng.nn.LayerNorm(), ng.nn.Dense(8, seed=1)
    h = norm(x + attn(x))
    y = norm(h + ff(h))
    fn = helpers.compile([x], y, target="reference")
    X = helpers.rand((2, 7, 8), 0, "float32")
    long = fn(X)
    np.testing.assert_allclose(fn(X[:, :3]), long[:, :3], rtol=1e-5, atol=1e-6)   # causal: a prefix's outputs
    with pytest.raises(ValueError, match="was built for inputs"):
        ff(ng.placeholder(("N", "T", 5)))
