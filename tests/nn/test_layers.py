"""Layers against NumPy: Dense, Conv2D, pooling, Flatten, activations by name."""
import numpy as np
import pytest

import nngraph as ng

import helpers

SELU_A, SELU_L = 1.6732632423543772, 1.0507009873554805
NP_ACT = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "softmax": lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "selu": lambda z: SELU_L * np.where(z > 0, z, SELU_A * np.expm1(np.minimum(z, 0))),
    "softplus": lambda z: np.logaddexp(0, z),
    "step": lambda z: (z >= 0).astype(z.dtype),
}


@pytest.mark.parametrize("name", sorted(NP_ACT))
def test_dense_with_each_activation(name, target):
    rng = np.random.default_rng(0)
    layer = ng.nn.Dense(5, activation=name, seed=1)
    x = ng.placeholder(("N", 4), name="x")
    fn = helpers.compile([x], layer(x), target=target)
    X = rng.normal(size=(6, 4)).astype(np.float32) * 2
    W, b = layer.params["W"].value, rng.normal(size=5).astype(np.float32)
    layer.params["b"].value = b
    want = NP_ACT[name](X.astype(np.float64) @ W + b)
    np.testing.assert_allclose(fn(X), want, rtol=1e-5, atol=1e-5)


def test_activation_layer_options_and_unknown_name():
    x = ng.placeholder((3,), name="x")
    y = ng.nn.Activation("leaky_relu", alpha=0.2)(ng.reshape(x, (1, 3)))
    out = helpers.run(y, {x: np.array([-1.0, 0.5, -2.0], np.float32)})
    np.testing.assert_allclose(out[0], [-0.2, 0.5, -0.4], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        ng.nn.Dense(3, activation="swishy")


def test_default_initializers_follow_the_course():
    # He for ReLU (var 2/n), Glorot otherwise (var 2/(n+m))
    relu = ng.nn.Dense(400, activation="relu", seed=0)
    relu(ng.placeholder(("N", 300)))
    assert abs(relu.params["W"].value.var() - 2 / 300) < 0.05 * 2 / 300
    lin = ng.nn.Dense(400, seed=0)
    lin(ng.placeholder(("N", 300)))
    assert abs(lin.params["W"].value.var() - 2 / 700) < 0.05 * 2 / 700
    assert not lin.params["b"].value.any()


def _np_conv(x, w, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = np.einsum("nchw,ochw->no", x[:, :, i:i + kh, j:j + kw], w)
    return out


def test_conv_pool_flatten_against_numpy(target):
    rng = np.random.default_rng(2)
    conv = ng.nn.Conv2D(4, 3, padding=1, activation="relu", seed=3)
    x = ng.placeholder(("N", 2, 6, 6), name="x")
    h = conv(x)
    mp, ap = ng.nn.MaxPool2D(2)(h), ng.nn.AvgPool2D(2)(h)
    flat = ng.nn.Flatten()(mp)
    assert tuple(flat.shape[1:]) == (4 * 3 * 3,)
    fn = helpers.compile([x], [h, mp, ap, flat], target=target)
    X = rng.normal(size=(3, 2, 6, 6)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    conv.params["b"].value = b
    H = np.maximum(_np_conv(X.astype(np.float64), conv.params["W"].value, 1) + b[None, :, None, None], 0)
    blocks = H.reshape(3, 4, 3, 2, 3, 2)
    got_h, got_mp, got_ap, got_flat = fn(X)
    np.testing.assert_allclose(got_h, H, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_mp, blocks.max((3, 5)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_ap, blocks.mean((3, 5)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_flat, blocks.max((3, 5)).reshape(3, -1), rtol=1e-4, atol=1e-5)


def test_layer_shape_errors_name_the_layer():
    d = ng.nn.Dense(3, name="head")
    d(ng.placeholder(("N", 4)))
    with pytest.raises(ValueError, match="head: was built for inputs \\[N,4\\]"):
        d(ng.placeholder(("N", 5)))
    with pytest.raises(ValueError, match="Conv2D needs inputs \\[N, C, H, W\\]"):
        ng.nn.Conv2D(2, 3)(ng.placeholder(("N", 4)))
