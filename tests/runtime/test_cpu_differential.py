"""Random graphs (a seeded generator) through target="reference" and target="cpu":
elementwise chains with broadcasting, reductions, matmuls, movement; the two must
agree, values and gradients."""
import numpy as np
import pytest

import nngraph as ng

UNARY = [ng.exp, ng.tanh, ng.sigmoid, ng.relu, ng.abs, ng.softplus, ng.sin, lambda t: ng.log1p(ng.abs(t)),
         lambda t: ng.sqrt(ng.abs(t) + 0.1), lambda t: -t]
BINARY = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, ng.maximum, ng.minimum,
          lambda a, b: a / (ng.abs(b) + 1.0), lambda a, b: ng.where(a > b, a, b * 0.5)]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nncache"))


def random_graph(seed, dtype):
    """A scalar cost over x[N, 8], y[8, 5] and a parameter w[8]: a random mix of ops."""
    rng = np.random.default_rng(seed)
    x = ng.placeholder(("N", 8), dtype=dtype, name="x")
    y = ng.placeholder((8, 5), dtype=dtype, name="y")
    w = ng.parameter(rng.standard_normal(8).astype(dtype), name="w")
    pool = [x, x * w, ng.broadcast_to(w, (8,)) + 0.0]
    for _ in range(rng.integers(4, 9)):
        r = rng.random()
        a = pool[rng.integers(len(pool))]
        if r < 0.4:
            pool.append(UNARY[rng.integers(len(UNARY))](a))
        elif r < 0.75:
            b = pool[rng.integers(len(pool))]
            if a.ndim < b.ndim or (a.ndim == b.ndim and rng.random() < 0.5):
                a, b = b, a
            pool.append(BINARY[rng.integers(len(BINARY))](a, b))
        elif r < 0.85 and a.ndim == 2:
            pool.append(ng.tanh(a @ y).sum(axis=1, keepdims=True) * a)
        elif a.ndim == 2:
            red = [lambda t: t.sum(axis=1, keepdims=True), lambda t: t.max(axis=1, keepdims=True),
                   lambda t: ng.softmax(t, -1), lambda t: ng.log_softmax(t, -1), lambda t: t.mean(axis=0)]
            pool.append(red[rng.integers(len(red))](a))
    out = pool[-1]
    cost = ((out * out).mean() if out.ndim else out * out) + (pool[1] * pool[1]).mean()
    for t in pool[3:]:
        if t.ndim == 2 and rng.random() < 0.5:
            cost = cost + t.mean()
    (gw,) = ng.grad(cost, [w])
    return [x, y], [cost, gw, out], {w: w - 0.01 * gw}, w


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_agree(seed):
    dtype = "float64" if seed % 3 == 0 else "float32"
    results = {}
    for target in ("reference", "cpu"):
        inputs, outputs, updates, w = random_graph(seed, dtype)
        fn = ng.compile(inputs, outputs, updates=updates, target=target)
        rng = np.random.default_rng(100 + seed)
        got = []
        for n in (5, 1, 33):
            X = rng.standard_normal((n, 8)).astype(dtype)
            Y = rng.standard_normal((8, 5)).astype(dtype)
            got.append(fn(X, Y))
        results[target] = (got, w.value.copy())
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-9, atol=1e-11)
    for ref, cpu in zip(results["reference"][0], results["cpu"][0]):
        for r, c in zip(ref, cpu):
            np.testing.assert_allclose(c, r, **tol)
    np.testing.assert_allclose(results["cpu"][1], results["reference"][1], **tol)
