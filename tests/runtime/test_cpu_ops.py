"""Graphs through ng.compile(target="cpu") against target="reference": dynamic
sizes 0, 1, 7, 1000 in one compiled function, non-contiguous inputs, and the
public behaviour (dumps, stats, numerics errors, atomic updates)."""
import numpy as np
import pytest

import nngraph as ng


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nncache"))


def _both(inputs, outputs, feeds_list, **kw):
    ref = ng.compile(inputs, outputs, target="reference", **kw)
    cpu = ng.compile(inputs, outputs, target="cpu", **kw)
    for feeds in feeds_list:
        want, got = ref(*feeds), cpu(*feeds)
        want = want if isinstance(want, list) else [want]
        got = got if isinstance(got, list) else [got]
        for w, g in zip(want, got):
            assert g.dtype == w.dtype and g.shape == w.shape
            if w.dtype.kind == "f":
                tol = 2e-5 if w.dtype == np.float32 else 1e-11
                np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
            else:
                np.testing.assert_array_equal(g, w)
    return cpu


SIZES = [0, 1, 7, 1000]


def _rows(n, cols, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((n, cols)).astype(dtype)


UNARY = ["exp", "log1p", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "softplus", "step", "neg"]


@pytest.mark.parametrize("op", UNARY)
def test_unary_chain_all_sizes(op):
    x = ng.placeholder(("N", 5), name="x")
    f = getattr(ng, op)
    arg = ng.abs(x) if op in ("log1p", "sqrt") else x
    _both([x], f(arg) * 2.0 + 1.0, [(_rows(n, 5, n),) for n in SIZES])


def test_broadcasting_reductions_and_softmax_all_sizes():
    x = ng.placeholder(("N", 13), name="x")
    b = ng.placeholder((13,), name="b")
    z = x * b + 0.5
    outs = [z.sum(axis=1), z.max(axis=1), z.min(axis=0), ng.argmax(z, 1), z.mean(), ng.softmax(z, -1),
            ng.log_softmax(z, -1), ng.logsumexp(z, 1)]
    bv = np.linspace(-1, 1, 13).astype(np.float32)
    feeds = [(_rows(n, 13, n), bv) for n in SIZES if n > 0]
    _both([x, b], outs, feeds)
    # reductions over an empty axis: sums are 0, the mean is NaN as in NumPy
    _both([x, b], [z.sum(axis=0), z.sum()], [(_rows(0, 13, 0), bv)])


def test_cross_entropy_step_updates_like_the_reference():
    rng = np.random.default_rng(0)
    x = ng.placeholder(("N", 20), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W0 = (rng.standard_normal((20, 5)) * 0.1).astype(np.float32)
    outs = {}
    for target in ("reference", "cpu"):
        W = ng.parameter(W0.copy(), name="W")
        b = ng.parameter(np.zeros(5, np.float32), name="b")
        loss = ng.cross_entropy(x @ W + b, y)
        gW, gb = ng.grad(loss, [W, b])
        fn = ng.compile([x, y], [loss, ng.argmax(x @ W, 1)], updates={W: W - 0.5 * gW, b: b - 0.5 * gb}, target=target)
        hist = []
        for n in (7, 1, 1000, 7):
            X = rng.standard_normal((n, 20)).astype(np.float32)
            Y = rng.integers(0, 5, n).astype(np.int32)
            hist.append(fn(X, Y))
        outs[target] = (hist, W.value.copy(), b.value.copy())
        rng = np.random.default_rng(0)
        rng.standard_normal((20, 5))
    for (lr, ar), (lc, ac) in zip(outs["reference"][0], outs["cpu"][0]):
        np.testing.assert_allclose(lc, lr, rtol=1e-5)
        np.testing.assert_array_equal(ac, ar)
    np.testing.assert_allclose(outs["cpu"][1], outs["reference"][1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs["cpu"][2], outs["reference"][2], rtol=1e-5, atol=1e-6)


def test_non_contiguous_and_movement_inputs():
    x = ng.placeholder(("N", 6), name="x", dtype="float64")
    w = ng.placeholder((6, 4), name="w", dtype="float64")
    outs = [ng.transpose(x) @ x, x[:, 1:5] @ ng.transpose(w[1:5, :]), ng.concatenate([x, x * 2], axis=1),
            ng.pad(x, [(0, 0), (1, 2)], value=3.0), ng.transpose(ng.reshape(w, (3, 8))),
            ng.where(x > 0, x, ng.exp(x)), ng.clip(x, -0.5, 0.5)]
    big = np.random.default_rng(1).standard_normal((40, 12))
    wv = np.random.default_rng(2).standard_normal((4, 6)).T      # a transposed view
    feeds = [(big[::2, ::2][:n], wv) for n in (0, 1, 7, 20)]    # strided views
    assert not feeds[2][0].flags.c_contiguous and not wv.flags.c_contiguous
    _both([x, w], outs, feeds)


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_integer_and_bool_graphs(dtype):
    a = ng.placeholder(("N",), dtype=dtype, name="a")
    b = ng.placeholder(("N",), dtype=dtype, name="b")
    if dtype == "bool":
        outs = [ng.logical_and(a, b), ng.where(a, b, a)]
    else:
        outs = [a * b - a, ng.maximum(a, b), (a + b).sum(), a < b, ng.abs(a)]
    rng = np.random.default_rng(3)
    feeds = [(rng.integers(-5, 5, n).astype(dtype), rng.integers(-5, 5, n).astype(dtype)) for n in SIZES]
    _both([a, b], outs, feeds)


def test_dropout_noise_is_identical_to_the_reference():
    x = ng.placeholder(("N", 64), name="x")
    out = ng.dropout(x, 0.5, training=True, seed=7)
    X = np.ones((9, 64), np.float32) + np.arange(64, dtype=np.float32)
    from nngraph.ops.random import step_counter
    c = step_counter()
    start = c.value.copy()
    ref = ng.compile([x], out, target="reference")
    got_ref = [ref(X) for _ in range(3)]
    c.value = start.copy()
    cpu = ng.compile([x], out, target="cpu")
    got_cpu = [cpu(X) for _ in range(3)]
    for r, g in zip(got_ref, got_cpu):
        np.testing.assert_array_equal(g, r)
    assert not np.array_equal(got_cpu[0], got_cpu[1])


def test_dumps_and_stats():
    x = ng.placeholder(("N", 32), name="x")
    fn = ng.compile([x], ng.tanh(x * 2.0).sum(axis=1), target="cpu")
    assert {"kernels", "llvm", "asm"} <= set(fn.stages())
    assert "kernel 0" in fn.dump("kernels")
    assert "nngraph_entry" in fn.dump("llvm")
    asm = fn.dump("asm")
    assert "ymm" in asm or "zmm" in asm
    st = fn.stats()
    assert st["kernels"] >= 1 and st["compile_seconds"] > 0 and "cache_hit" in st
    fn(np.ones((3, 32), np.float32))
    assert fn.stats()["peak_bytes"] >= 0


def test_numerics_error_names_the_op_and_applies_no_update():
    x = ng.placeholder((3,), name="x")
    p = ng.parameter(np.ones(3, np.float32), name="p")
    y = ng.log(x) * p
    fn = ng.compile([x], y.sum(), updates={p: p + y}, target="cpu", check_numerics=True)
    with pytest.raises(ng.NumericsError, match="test_cpu_ops.py"):
        fn(np.array([1.0, -1.0, 2.0], np.float32))
    np.testing.assert_array_equal(p.value, np.ones(3, np.float32))
    fn(np.array([1.0, 1.0, 2.0], np.float32))
    np.testing.assert_allclose(p.value, [1, 1, 1 + np.log(2)], rtol=1e-6)
