"""Each optimiser's compiled update against a NumPy implementation of the same
formulas, step by step: weights and state after every one of several steps."""
import numpy as np
import pytest

import nngraph as ng

import helpers

STEPS = 5


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(16, 5)).astype(np.float32)
    T = rng.normal(size=(16, 3)).astype(np.float32)
    W0 = rng.normal(size=(5, 3)).astype(np.float32)
    b0 = rng.normal(size=(3,)).astype(np.float32)
    return X, T, W0, b0


def _np_grads(X, T, W, b):
    """d/dW, d/db of mean((X W + b - T)^2) in float64."""
    r = X @ W + b - T
    g = 2.0 * r / r.size
    return X.T @ g, g.sum(0)


# NumPy reference optimisers: state dict per weight, step(w, g, state, t) -> w
def np_sgd(lr, momentum=0.0, nesterov=False, wd=0.0):
    def step(w, g, s, t):
        g = g + wd * w
        if momentum == 0:
            return w - lr * g
        v = momentum * s.get("v", 0.0) - lr * g
        s["v"] = v
        return w + momentum * v - lr * g if nesterov else w + v
    return step


def np_adagrad(lr, eps=1e-8):
    def step(w, g, s, t):
        s["r"] = s.get("r", 0.0) + g * g
        return w - lr * g / (np.sqrt(s["r"]) + eps)
    return step


def np_rmsprop(lr, rho=0.9, eps=1e-8):
    def step(w, g, s, t):
        s["r"] = rho * s.get("r", 0.0) + (1 - rho) * g * g
        return w - lr * g / np.sqrt(s["r"] + eps)
    return step


def np_adadelta(lr, rho=0.9, eps=1e-6):
    def step(w, g, s, t):
        s["v"] = rho * s.get("v", 0.0) + (1 - rho) * g * g
        d = np.sqrt(s.get("u", 0.0) + eps) / np.sqrt(s["v"] + eps) * g
        s["u"] = rho * s.get("u", 0.0) + (1 - rho) * d * d
        return w - lr * d
    return step


def np_adam(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
    def step(w, g, s, t):
        g = g + wd * w
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        mh, vh = s["m"] / (1 - b1 ** t), s["v"] / (1 - b2 ** t)
        return w - lr * mh / (np.sqrt(vh) + eps)
    return step


CASES = {
    "sgd": (lambda: ng.optim.SGD(0.1), np_sgd(0.1)),
    "sgd_momentum": (lambda: ng.optim.SGD(0.1, momentum=0.9), np_sgd(0.1, 0.9)),
    "sgd_nesterov": (lambda: ng.optim.SGD(0.05, momentum=0.8, nesterov=True), np_sgd(0.05, 0.8, True)),
    "sgd_weight_decay": (lambda: ng.optim.SGD(0.1, momentum=0.5, weight_decay=0.01), np_sgd(0.1, 0.5, wd=0.01)),
    "adagrad": (lambda: ng.optim.AdaGrad(0.1), np_adagrad(0.1)),
    "rmsprop": (lambda: ng.optim.RMSProp(0.01, rho=0.8), np_rmsprop(0.01, 0.8)),
    "adadelta": (lambda: ng.optim.AdaDelta(1.0, rho=0.9), np_adadelta(1.0, 0.9)),
    "adam": (lambda: ng.optim.Adam(0.05), np_adam(0.05)),
    "adam_weight_decay": (lambda: ng.optim.Adam(0.05, beta1=0.8, beta2=0.99, weight_decay=0.1),
                          np_adam(0.05, 0.8, 0.99, wd=0.1)),
}


def _run(make_opt, target):
    X, T, W0, b0 = _problem()
    x = ng.placeholder(("N", 5), name="x")
    t = ng.placeholder(("N", 3), name="t")
    W, b = ng.parameter(W0.copy(), "W"), ng.parameter(b0.copy(), "b")
    loss = ng.mse(x @ W + b, t)
    opt = make_opt()
    step = helpers.compile([x, t], loss, updates=opt.minimize(loss, [W, b]), target=target)
    history = []
    for _ in range(STEPS):
        step(X, T)
        history.append((W.value.copy(), b.value.copy()))
    return opt, history


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_update_matches_numpy_step_by_step(name, target):
    """Runs per target of the suite (oracle, reference, cpu...: the conftest fixture)."""
    make_opt, np_step = CASES[name]
    opt, got = _run(make_opt, target)
    X, T, W0, b0 = _problem()
    X, T = X.astype(np.float64), T.astype(np.float64)
    W, b = W0.astype(np.float64), b0.astype(np.float64)
    sW, sb = {}, {}
    for i in range(STEPS):
        gW, gb = _np_grads(X, T, W, b)
        W, b = np_step(W, gW, sW, i + 1), np_step(b, gb, sb, i + 1)
        np.testing.assert_allclose(got[i][0], W, rtol=2e-4, atol=2e-5, err_msg=f"{name}: W after step {i + 1}")
        np.testing.assert_allclose(got[i][1], b, rtol=2e-4, atol=2e-5, err_msg=f"{name}: b after step {i + 1}")
    assert int(opt.iterations.value) == STEPS
    # the weights moved: a test of an update that does nothing would pass above only by accident
    assert not np.allclose(got[-1][0], W0)


def test_state_is_non_trainable_parameters_owned_by_the_optimizer():
    opt, _ = _run(lambda: ng.optim.Adam(0.01), "reference")
    state = opt.state()
    assert all(isinstance(p, ng.Parameter) and not p.trainable for p in state)
    names = {p.name for p in state}
    assert {"lr", "iterations", "W.m", "W.v", "b.m", "b.v"} <= names


def test_learning_rate_is_a_parameter_changed_without_recompiling():
    x = ng.placeholder(("N", 2), name="x")
    W = ng.parameter(np.ones((2, 1), np.float32), "W")
    loss = (x @ W).sum()
    opt = ng.optim.SGD(0.1)
    step = ng.compile([x], loss, updates=opt.minimize(loss, [W]), target="reference")
    X = np.array([[1.0, 2.0]], np.float32)
    step(X)
    np.testing.assert_allclose(W.value[:, 0], [0.9, 0.8], rtol=1e-6)
    opt.lr.value = np.float32(1.0)
    step(X)
    np.testing.assert_allclose(W.value[:, 0], [-0.1, -1.2], rtol=1e-6)


@pytest.mark.parametrize("bad", [lambda: ng.optim.SGD(-1.0), lambda: ng.optim.SGD(0.1, momentum=1.5),
                                 lambda: ng.optim.SGD(0.1, nesterov=True), lambda: ng.optim.Adam(beta1=1.0),
                                 lambda: ng.optim.RMSProp(rho=-0.1), lambda: ng.optim.SGD(0.1, weight_decay=-1)])
def test_bad_hyperparameters_are_errors(bad):
    with pytest.raises(ValueError):
        bad()


def test_get_by_name():
    assert isinstance(ng.optim.get("adam"), ng.optim.Adam)
    with pytest.raises(ValueError, match="unknown optimizer"):
        ng.optim.get("adamw2")


def test_rmsprop_matches_torch_after_five_steps():
    """eps outside the square root, as torch.optim.RMSprop (alpha = rho): issue 11 item 13."""
    torch = pytest.importorskip("torch")
    w0 = np.array([0.5, -1.5, 2.0, 1e-3], np.float64)
    W = ng.parameter(w0.copy(), name="W")
    loss = ng.sum(W * W * W)
    opt = ng.optim.RMSProp(0.01, rho=0.9, eps=1e-8)
    f = ng.compile([], loss, updates=opt.minimize(loss, [W]), target="reference")
    tw = torch.tensor(w0, requires_grad=True)
    topt = torch.optim.RMSprop([tw], lr=0.01, alpha=0.9, eps=1e-8)
    for _ in range(5):
        f()
        topt.zero_grad()
        (tw ** 3).sum().backward()
        topt.step()
    np.testing.assert_allclose(W.value, tw.detach().numpy(), rtol=1e-6, atol=1e-9)  # lr is float32
