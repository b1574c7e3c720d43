"""Conv2DTranspose, UpSampling2D, GlobalAvgPool2D, LayerNorm, Reshape, Add and Concatenate:
values and gradients against PyTorch or NumPy, and training inside Sequential and
functional models (a small conv autoencoder, a two-branch model with a residual Add)."""
import numpy as np
import pytest

import nngraph as ng

import helpers


def _run(layer_out, x, X, target, extra=()):
    return helpers.compile([x], [layer_out, *extra], target=target)(X)


def test_conv2d_transpose_layer_matches_pytorch(target):
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(0).standard_normal((2, 3, 5, 4)).astype(np.float32)
    layer = ng.nn.Conv2DTranspose(4, 3, stride=2, padding=1, output_padding=1, activation="relu", seed=1)
    x = ng.placeholder(("N", 3, 5, 4), name="x")
    y = layer(x)
    gW, gb = ng.grad(ng.sum(y * y), [layer.params["W"], layer.params["b"]])
    got, got_gW, got_gb = _run(y, x, X, target, (gW, gb))
    ref = torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.params["W"].value))
        ref.bias.copy_(torch.tensor(np.linspace(-0.1, 0.1, 4, dtype=np.float32)))
    layer.params["b"].value = ref.bias.detach().numpy()
    got, got_gW, got_gb = _run(y, x, X, target, (gW, gb))
    ty = torch.relu(ref(torch.tensor(X)))
    (ty * ty).sum().backward()
    assert layer.params["W"].value.shape == (3, 4, 3, 3) and got.shape == (2, 4, 10, 8)
    np.testing.assert_allclose(got, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_gW, ref.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_gb, ref.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_upsampling_and_global_average_pooling(target):
    X = np.random.default_rng(1).standard_normal((2, 3, 2, 3)).astype(np.float32)
    x = ng.placeholder(("N", 3, 2, 3), name="x")
    up, gap = _run(ng.nn.UpSampling2D(2)(x), x, X, target, (ng.nn.GlobalAvgPool2D()(x),))
    np.testing.assert_array_equal(up, X.repeat(2, axis=2).repeat(2, axis=3))
    np.testing.assert_allclose(gap, X.mean(axis=(2, 3)), rtol=1e-6)
    assert ng.nn.UpSampling2D(size=(1, 2))(x).shape[2:] == (2, 6)


def test_layer_norm_layer_matches_pytorch(target):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    X = (rng.standard_normal((4, 3, 5)) * 3 + 1).astype(np.float32)
    layer = ng.nn.LayerNorm(axis=(-2, -1))
    x = ng.placeholder((4, 3, 5), name="x")
    y = layer(x)
    layer.params["gamma"].value = rng.standard_normal((3, 5)).astype(np.float32)
    layer.params["beta"].value = rng.standard_normal((3, 5)).astype(np.float32)
    up = rng.standard_normal((4, 3, 5)).astype(np.float32)
    gx, gg, gb = ng.grad(ng.sum(y * ng.constant(up)), [x, layer.params["gamma"], layer.params["beta"]])
    got = helpers.compile([x], [y, gx, gg, gb], target=target)(X)
    ref = torch.nn.LayerNorm((3, 5), eps=1e-5)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.params["gamma"].value))
        ref.bias.copy_(torch.tensor(layer.params["beta"].value))
    tx = torch.tensor(X, requires_grad=True)
    ty = ref(tx)
    (ty * torch.tensor(up)).sum().backward()
    for a, b in zip(got, (ty.detach(), tx.grad, ref.weight.grad, ref.bias.grad)):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-4)


def test_layer_norm_gradient_by_finite_differences(target):
    layer = ng.nn.LayerNorm()
    layer.ensure_built(ng.placeholder(("N", 4)))
    gamma = np.array([0.5, -1.0, 2.0, 1.5])
    helpers.check_grad(lambda x: ng.layer_norm(x, ng.constant(gamma), None, (-1,), layer.eps),
                       [helpers.rand((3, 4), 3)], target)


def test_reshape_add_concatenate(target):
    X = np.arange(24, dtype=np.float32).reshape(2, 12)
    x = ng.placeholder(("N", 12), name="x")
    r = ng.nn.Reshape((3, -1))(x)
    s = ng.nn.Add()([r, r * 2.0, ng.constant(np.float32(1.0))])
    c = ng.nn.Concatenate()([r, s])
    c1 = ng.nn.Concatenate(axis=1)([r, r])
    got_r, got_s, got_c, got_c1 = helpers.compile([x], [r, s, c, c1], target=target)(X)
    R = X.reshape(2, 3, 4)
    np.testing.assert_array_equal(got_r, R)
    np.testing.assert_array_equal(got_s, 3 * R + 1)
    np.testing.assert_array_equal(got_c, np.concatenate([R, 3 * R + 1], -1))
    np.testing.assert_array_equal(got_c1, np.concatenate([R, R], 1))
    with pytest.raises(ValueError, match="list of at least two"):
        ng.nn.Add()(x)
    with pytest.raises(ValueError, match="batch axis"):
        ng.nn.Concatenate(axis=0)([x, x])


def _digits(n=96):
    data = ng.data.load_digits()
    X, y = data["train"]
    return X[:n].astype(np.float32), y[:n]


def test_conv_autoencoder_trains():
    X, _ = _digits()
    imgs = X.reshape(-1, 1, 8, 8)
    model = ng.nn.Sequential([
        ng.nn.Conv2D(4, 3, padding=1, activation="relu", seed=1), ng.nn.MaxPool2D(2),
        ng.nn.Conv2DTranspose(4, 3, stride=2, padding=1, output_padding=1, activation="relu", seed=2),
        ng.nn.Conv2D(1, 3, padding=1, seed=3), ng.nn.UpSampling2D(1)], input_shape=(1, 8, 8))
    model.compile(optimizer=ng.optim.Adam(0.01), loss="mse", target="cpu")
    hist = model.fit(imgs, imgs, epochs=4, batch_size=32, verbose=0)
    assert hist["loss"][-1] < 0.7 * hist["loss"][0]


def test_functional_model_with_add_concatenate_layernorm_trains():
    X, y = _digits()
    inp = ng.nn.Input((64,))
    a = ng.nn.Dense(16, activation="relu", seed=1)(inp)
    b = ng.nn.Dense(16, activation="tanh", seed=2)(inp)
    h = ng.nn.Add()([a, ng.nn.Dense(16, seed=3)(a)])
    h = ng.nn.LayerNorm()(ng.nn.Concatenate()([h, b]))
    h = ng.nn.GlobalAvgPool2D()(ng.nn.Reshape((4, 4, 2))(h))
    model = ng.nn.Model(inp, ng.nn.Dense(10, seed=4)(ng.nn.Reshape((4,))(h)))
    model.compile(optimizer=ng.optim.Adam(0.02), loss="cross_entropy", metrics=["accuracy"], target="cpu")
    hist = model.fit(X, y, epochs=6, batch_size=32, verbose=0)
    assert hist["loss"][-1] < hist["loss"][0]
    assert len(model.trainable_params) == 10   # 4 Dense (W, b) and LayerNorm (gamma, beta)
