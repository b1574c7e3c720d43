"""Scan graphs for the tests of the loop's lowering and backends: an Elman RNN and an
LSTM cell written with ng ops inside ng.scan, and NumPy oracles for both."""
from __future__ import annotations

import numpy as np

import nngraph as ng

F, H = 4, 6


def params(seed=0, dtype="float32", gates=1):
    rng = np.random.default_rng(seed)
    return {"Wx": (rng.standard_normal((F, gates * H)) * 0.4).astype(dtype),
            "Wh": (rng.standard_normal((H, gates * H)) * 0.4).astype(dtype),
            "b": (rng.standard_normal(gates * H) * 0.1).astype(dtype)}


def elman(reverse=False, dtype="float32", seed=0):
    """(xs, h0 placeholders, parameters, (hT, ys)): h' = tanh(x_t Wx + h Wh + b), y = 2 h'."""
    p = {k: ng.parameter(v, name=k) for k, v in params(seed, dtype).items()}
    xs = ng.placeholder(("T", "N", F), dtype, name="xs")
    h0 = ng.placeholder(("N", H), dtype, name="h0")

    def step(h, x_t):
        h2 = ng.tanh(x_t @ p["Wx"] + h @ p["Wh"] + p["b"])
        return h2, h2 * 2.0
    hT, ys = ng.scan(step, h0, xs, reverse=reverse)
    return xs, h0, p, (hT, ys)


def elman_oracle(xs, h0, Wx, Wh, b, reverse=False):
    h = h0.astype(np.float64)
    ys = np.zeros(xs.shape[:2] + (H,))
    for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
        ys[t] = 2 * h
    return h, ys


def lstm(dtype="float32", seed=0):
    """(xs, (h0, c0) placeholders, parameters, ((hT, cT), hs)): gates i, f, g, o as PyTorch."""
    p = {k: ng.parameter(v, name=k) for k, v in params(seed, dtype, gates=4).items()}
    xs = ng.placeholder(("T", "N", F), dtype, name="xs")
    h0 = ng.placeholder(("N", H), dtype, name="h0")
    c0 = ng.placeholder(("N", H), dtype, name="c0")
    (hT, cT), hs = ng.scan(lambda carry, x_t: lstm_cell(carry, x_t, p), (h0, c0), xs)
    return xs, (h0, c0), p, ((hT, cT), hs)


def lstm_cell(carry, x_t, p):
    h, c = carry
    z = x_t @ p["Wx"] + h @ p["Wh"] + p["b"]
    n = z.shape[1] // 4
    i, f = ng.sigmoid(z[:, :n]), ng.sigmoid(z[:, n:2 * n])
    g, o = ng.tanh(z[:, 2 * n:3 * n]), ng.sigmoid(z[:, 3 * n:])
    c2 = f * c + i * g
    h2 = o * ng.tanh(c2)
    return (h2, c2), h2


def lstm_oracle(xs, h0, c0, Wx, Wh, b):
    def sig(v):
        return 1 / (1 + np.exp(-v))
    h, c = h0.astype(np.float64), c0.astype(np.float64)
    hs = np.zeros(xs.shape[:2] + (H,))
    for t in range(len(xs)):
        z = xs[t] @ Wx + h @ Wh + b
        i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs[t] = h
    return h, c, hs


def elman_on(xs, h0, Wx, Wh, b, reverse=False):
    """hT and ys of an Elman RNN whose weights are given tensors (placeholders for
    finite differences): the loss reads both results."""
    hT, ys = ng.scan(lambda h, x_t: (ng.tanh(x_t @ Wx + h @ Wh + b),) * 2, h0, xs, reverse=reverse)
    return ng.sum(ys * ys) + ng.sum(hT * 0.5)


def lstm_on(xs, h0, c0, Wx, Wh, b):
    """An LSTM cell over xs with given weights; a loss of all hidden states and the final cell."""
    p = {"Wx": Wx, "Wh": Wh, "b": b}
    (hT, cT), hs = ng.scan(lambda carry, x_t: lstm_cell(carry, x_t, p), (h0, c0), xs)
    return ng.sum(hs * hs) + ng.sum(cT)


def lstm_sgd_step(batch_first: bool, rates=None, classes: int = 3):
    """(loss, updates, [x, y], params, grads) of one SGD step of LSTM(H) on x [N, T, F]
    (ng.nn.LSTM) or [T, N, F] (the cell in ng.scan), then Dense(classes) and
    cross-entropy: learning rate 0.1, or rates[i] (placeholders) for params[i]."""
    rng = np.random.default_rng(5)
    y = ng.placeholder(("N",), "int32", name="y")
    V = ng.parameter(rng.uniform(-0.5, 0.5, (H, classes)).astype(np.float32), name="V")
    c = ng.parameter(rng.uniform(-0.5, 0.5, classes).astype(np.float32), name="c")
    if batch_first:
        x = ng.placeholder(("N", "T", F), name="x")
        lstm = ng.nn.LSTM(H, seed=3)
        hT = lstm(x)
        params = [lstm.kernel, lstm.recurrent_kernel, lstm.bias]
    else:
        x = ng.placeholder(("T", "N", F), name="x")
        p = {k: ng.parameter(rng.uniform(-0.5, 0.5, shape).astype(np.float32), name=k)
             for k, shape in (("Wx", (F, 4 * H)), ("Wh", (H, 4 * H)), ("b", (4 * H,)))}
        zeros = ng.broadcast_to(ng.constant(np.zeros((1, H), np.float32)), (x.shape[1], H))
        (hT, _), _ = ng.scan(lambda carry, x_t: (lstm_cell(carry, x_t, p)[0], None), (zeros, zeros), x)
        params = list(p.values())
    params += [V, c]
    loss = ng.cross_entropy(hT @ V + c, y)
    grads = ng.grad(loss, params)
    rates = rates or [0.1] * len(params)
    return loss, {p: p - r * g for p, g, r in zip(params, grads, rates)}, [x, y], params, grads
