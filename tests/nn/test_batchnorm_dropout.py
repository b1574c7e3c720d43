"""BatchNorm (training and inference modes, running statistics) and Dropout (rate,
scaling, fresh masks per call, identity at inference) against NumPy."""
import numpy as np
import pytest

import nngraph as ng

import helpers


def _np_bn(x, gamma, beta, axis, eps=1e-5):
    others = tuple(i for i in range(x.ndim) if i != axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    m, v = x.mean(others), x.var(others)
    y = (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)
    n = x.size // x.shape[axis]
    return y, m, v * n / (n - 1)


@pytest.mark.parametrize("shape", [(8, 4), (6, 3, 5, 5)])
def test_batchnorm_training_inference_and_running_stats(shape, target):
    rng = np.random.default_rng(0)
    bn = ng.nn.BatchNorm(momentum=0.2)
    x = ng.placeholder(("N",) + shape[1:], name="x")
    with ng.nn.collect_updates() as c:
        y_train = bn(x, training=True)
    assert set(c.updates) == {bn.params["running_mean"], bn.params["running_var"]}
    train = helpers.compile([x], y_train, updates=c.updates, target=target)
    infer = helpers.compile([x], bn(x, training=False), target=target)
    gamma = rng.uniform(0.5, 2.0, shape[1]).astype(np.float32)
    beta = rng.normal(size=shape[1]).astype(np.float32)
    bn.params["gamma"].value, bn.params["beta"].value = gamma, beta
    rm, rv = np.zeros(shape[1]), np.ones(shape[1])
    for step in range(3):
        X = (rng.normal(size=shape) * 3 + 1.5).astype(np.float32)
        want, m, v_unbiased = _np_bn(X.astype(np.float64), gamma, beta, 1)
        np.testing.assert_allclose(train(X), want, rtol=1e-4, atol=1e-4)
        rm, rv = 0.8 * rm + 0.2 * m, 0.8 * rv + 0.2 * v_unbiased
        np.testing.assert_allclose(bn.params["running_mean"].value, rm, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.params["running_var"].value, rv, rtol=1e-5, atol=1e-6)
    X = rng.normal(size=shape).astype(np.float32)
    view = [1] * len(shape)
    view[1] = -1
    want = (X - rm.reshape(view)) / np.sqrt(rv.reshape(view) + 1e-5) * gamma.reshape(view) + beta.reshape(view)
    np.testing.assert_allclose(infer(X), want, rtol=1e-4, atol=1e-4)
    # inference does not touch the running statistics
    np.testing.assert_allclose(bn.params["running_mean"].value, rm, rtol=1e-5, atol=1e-6)


def test_batchnorm_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    bn = ng.nn.BatchNorm()
    x0 = ng.placeholder((5, 3))
    bn(x0, training=True)  # build for [N, 3]
    gamma = rng.uniform(0.5, 2.0, 3)
    beta = rng.normal(size=3)

    def build(x):
        with ng.nn.collect_updates():
            y = ng.batch_norm(x, gamma, beta, *ng.moments(x, (0,)))
        return y * np.arange(1.0, 4.0)

    helpers.check_grad(build, [rng.normal(size=(5, 3))], target="oracle")


def test_batchnorm_in_a_model_uses_running_stats_at_evaluation():
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(64, 6)) * 4 + 2).astype(np.float32)
    y = (X[:, 0] > 2).astype(np.int32)
    model = ng.nn.Sequential([ng.nn.Dense(8), ng.nn.BatchNorm(), ng.nn.Activation("relu"), ng.nn.Dense(2)],
                             input_shape=(6,))
    model.compile(ng.optim.SGD(0.05), "cross_entropy", ["accuracy"], target="reference")
    bn = model.layers[1]
    before = bn.params["running_mean"].value.copy()
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert not np.allclose(bn.params["running_mean"].value, before)
    # predict uses the running statistics: one row alone gives the same output as in a batch
    np.testing.assert_allclose(model.predict(X[:1]), model.predict(X)[:1], rtol=1e-5, atol=1e-6)


def test_dropout_rate_scaling_fresh_masks_and_identity_at_inference(target):
    drop = ng.nn.Dropout(0.3, seed=11)
    x = ng.placeholder(("N", 500), name="x")
    train = helpers.compile([x], drop(x, training=True), target=target)
    infer = helpers.compile([x], drop(x, training=False), target=target)
    X = np.random.default_rng(3).uniform(1.0, 2.0, size=(40, 500)).astype(np.float32)
    a, b = train(X), train(X)
    for out in (a, b):
        dropped = out == 0
        assert abs(dropped.mean() - 0.3) < 0.01  # 20000 draws: standard error 0.0032
        np.testing.assert_allclose(out[~dropped], X[~dropped] / 0.7, rtol=1e-6)
    assert (a == 0).sum() != (b == 0).sum() or not np.array_equal(a == 0, b == 0)  # a new mask per call
    np.testing.assert_array_equal(infer(X), X)


def test_dropout_in_training_graph_only():
    model = ng.nn.Sequential([ng.nn.Dense(4), ng.nn.Dropout(0.5), ng.nn.Dense(2)], input_shape=(3,))
    model.compile("sgd", "cross_entropy", target="reference")
    assert "uniform" in model.compiled("train").dump("graph")
    assert "uniform" not in model.compiled("predict").dump("graph")
    assert "uniform" not in model.compiled("evaluate").dump("graph")
    with pytest.raises(ValueError, match="rate"):
        ng.nn.Dropout(1.0)
