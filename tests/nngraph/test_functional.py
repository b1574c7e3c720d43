"""The neural functions of the public API (docs/graphs.md) against NumPy: softmax family, losses (with integer
and probability labels, probabilities and logits), one_hot, activations, batch_norm
(training and inference), layer_norm and dropout (rate, scale, determinism by seed)."""
import numpy as np
import pytest
from scipy.special import log_softmax as np_log_softmax
from scipy.special import logsumexp as np_logsumexp
from scipy.special import softmax as np_softmax

import nngraph as ng
from helpers import compile, rand, run


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_log_softmax_logsumexp(axis, target):
    a = rand((3, 4, 5), 1) * 3
    x = ng.placeholder(a.shape, "float64")
    sm, lsm, lse = run([ng.softmax(x, axis), ng.log_softmax(x, axis), ng.logsumexp(x, axis)], {x: a}, target)
    np.testing.assert_allclose(sm, np_softmax(a, axis=axis), rtol=1e-12)
    np.testing.assert_allclose(lsm, np_log_softmax(a, axis=axis), rtol=1e-12)
    np.testing.assert_allclose(lse, np_logsumexp(a, axis=axis), rtol=1e-12)


def test_softmax_family_is_finite_for_huge_logits(target):
    a = np.array([[1e4, -1e4, 0.0], [-5e3, -5e3, -5e3 - 1]], np.float32)
    x = ng.placeholder(a.shape)
    sm, lsm, log_sm = run([ng.softmax(x), ng.log_softmax(x), ng.log(ng.softmax(x))], {x: a}, target)
    for v in (sm, lsm, log_sm):
        assert np.all(np.isfinite(v))
    np.testing.assert_allclose(lsm, np_log_softmax(a.astype(np.float64), axis=-1), rtol=1e-6)
    np.testing.assert_allclose(log_sm, lsm)


def test_cross_entropy_with_class_ids_and_with_probabilities(target):
    logits = rand((6, 4), 2) * 2
    ids = np.array([0, 3, 1, 1, 2, 3], np.int32)
    probs = np_softmax(rand((6, 4), 3), axis=-1)
    z = ng.placeholder(("N", 4), "float64")
    y = ng.placeholder(("N",), "int32")
    p = ng.placeholder(("N", 4), "float64")
    ce_ids, ce_probs = run([ng.cross_entropy(z, y), ng.cross_entropy(z, p)], {z: logits, y: ids, p: probs}, target)
    lsm = np_log_softmax(logits, axis=-1)
    np.testing.assert_allclose(ce_ids, -lsm[np.arange(6), ids].mean(), rtol=1e-12)
    np.testing.assert_allclose(ce_probs, -(probs * lsm).sum(-1).mean(), rtol=1e-12)
    big = run(ng.cross_entropy(z, y), {z: logits * 1e5, y: ids}, target)
    assert np.isfinite(big)
    np.testing.assert_allclose(big, -np_log_softmax(logits * 1e5, axis=-1)[np.arange(6), ids].mean(), rtol=1e-12)


def test_cross_entropy_label_shape_error():
    with pytest.raises(ng.ShapeError, match="one class id per row"):
        ng.cross_entropy(ng.placeholder((5, 3)), ng.placeholder((5, 3), "int32"))


def test_binary_cross_entropy_from_probabilities_and_from_logits(target):
    z = rand((3, 5), 4) * 3
    t = (rand((3, 5), 5) > 0).astype(np.float64)
    pr = 1 / (1 + np.exp(-z))
    zx, tx, px = (ng.placeholder((3, 5), "float64") for _ in range(3))
    from_p, from_z, via_sigmoid = run([ng.binary_cross_entropy(px, tx), ng.binary_cross_entropy(zx, tx, from_logits=True),
                                       ng.binary_cross_entropy(ng.sigmoid(zx), tx)], {zx: z, tx: t, px: pr}, target)
    want = np.mean(-t * np.log(pr) - (1 - t) * np.log(1 - pr))
    for v in (from_p, from_z, via_sigmoid):
        np.testing.assert_allclose(v, want, rtol=1e-10)
    # probabilities of exactly 0 and 1: each log is clamped at -100, as PyTorch does
    p2, t2 = ng.placeholder((3,), "float64"), ng.placeholder((3,), "float64")
    edge = run(ng.binary_cross_entropy(p2, t2), {p2: np.array([0.0, 1.0, 0.5]), t2: np.array([1.0, 0.0, 1.0])}, target)
    np.testing.assert_allclose(edge, (100 + 100 + np.log(2)) / 3, rtol=1e-12)
    huge = run(ng.binary_cross_entropy(zx, tx, from_logits=True), {zx: z * 1e4, tx: t}, target)
    assert np.isfinite(huge)


def test_mse_and_one_hot(target):
    a, b = rand((4, 3), 6), rand((4, 3), 7)
    x, y = ng.placeholder((4, 3), "float64"), ng.placeholder((4, 3), "float64")
    np.testing.assert_allclose(run(ng.mse(x, y), {x: a, y: b}, target), np.mean((a - b) ** 2), rtol=1e-12)
    lab = np.array([[2, 0], [1, 4]], np.int64)
    l = ng.placeholder((2, 2), "int64")
    oh, oh_i = run([ng.one_hot(l, 5), ng.one_hot(l, 5, dtype="int32")], {l: lab}, target)
    assert oh.dtype == np.float32 and oh_i.dtype == np.int32
    np.testing.assert_array_equal(oh, np.eye(5)[lab])
    np.testing.assert_array_equal(oh_i, np.eye(5, dtype=np.int32)[lab])
    ls = ng.placeholder(("N",), "int32")
    fn = compile([ls], ng.one_hot(ls, 3), target)
    np.testing.assert_array_equal(fn(np.array([2, 0, 1, 1], np.int32)), np.eye(3)[[2, 0, 1, 1]])
    with pytest.raises(ng.ShapeError, match="integers"):
        ng.one_hot(x, 3)


def test_activations(target):
    a = rand((4, 5), 8) * 2
    x = ng.placeholder(a.shape, "float64")
    outs = [ng.leaky_relu(x), ng.leaky_relu(x, 0.3), ng.elu(x), ng.elu(x, 0.5), ng.selu(x), ng.clip(x, -1.0, 0.5)]
    sa, ss = 1.6732632423543772, 1.0507009873554805
    want = [np.where(a > 0, a, 0.01 * a), np.where(a > 0, a, 0.3 * a), np.where(a > 0, a, np.expm1(a)),
            np.where(a > 0, a, 0.5 * np.expm1(a)), ss * np.where(a > 0, a, sa * np.expm1(a)), np.clip(a, -1, 0.5)]
    for got, w in zip(run(outs, {x: a}, target), want):
        np.testing.assert_allclose(got, w, rtol=1e-12)


def test_batch_norm_training_and_inference(target):
    a = rand((4, 3, 2, 5), 9) * 2 + 1
    gam, bet = rand((3,), 10), rand((3,), 11)
    rm, rv = rand((3,), 12), rand((3,), 13, low=0.5, high=2.0)
    x = ng.placeholder(("N", 3, 2, 5), "float64")
    g, b, m, v = (ng.placeholder((3,), "float64") for _ in range(4))
    train = ng.batch_norm(x, g, b)
    infer = ng.batch_norm(x, g, b, mean=m, var=v)
    plain = ng.batch_norm(x)
    tr, inf, pl = run([train, infer, plain], {x: a, g: gam, b: bet, m: rm, v: rv}, target)
    c = lambda u: u.reshape(1, 3, 1, 1)  # noqa: E731
    mu, var = a.mean((0, 2, 3), keepdims=True), a.var((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(pl, (a - mu) / np.sqrt(var + 1e-5), rtol=1e-10)
    np.testing.assert_allclose(tr, (a - mu) / np.sqrt(var + 1e-5) * c(gam) + c(bet), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(inf, (a - c(rm)) / np.sqrt(c(rv) + 1e-5) * c(gam) + c(bet), rtol=1e-10, atol=1e-12)
    a2 = rand((6, 4), 14)
    x2 = ng.placeholder((6, 4), "float64")
    np.testing.assert_allclose(run(ng.batch_norm(x2, eps=1e-3), {x2: a2}, target),
                               (a2 - a2.mean(0)) / np.sqrt(a2.var(0) + 1e-3), rtol=1e-10)
    mm, vv = run(list(ng.moments(x, (0, 2, 3))), {x: a}, target)
    np.testing.assert_allclose(mm, mu.reshape(3), rtol=1e-12)
    np.testing.assert_allclose(vv, var.reshape(3), rtol=1e-12)


def test_layer_norm(target):
    a = rand((3, 4, 6), 15) * 3 - 1
    gam, bet = rand((6,), 16), rand((6,), 17)
    x, g, b = ng.placeholder(a.shape, "float64"), ng.placeholder((6,), "float64"), ng.placeholder((6,), "float64")
    last, both = run([ng.layer_norm(x, g, b), ng.layer_norm(x, axis=(1, 2))], {x: a, g: gam, b: bet}, target)
    m, v = a.mean(-1, keepdims=True), a.var(-1, keepdims=True)
    np.testing.assert_allclose(last, (a - m) / np.sqrt(v + 1e-5) * gam + bet, rtol=1e-10, atol=1e-12)
    m2, v2 = a.mean((1, 2), keepdims=True), a.var((1, 2), keepdims=True)
    np.testing.assert_allclose(both, (a - m2) / np.sqrt(v2 + 1e-5), rtol=1e-10)


def _spec_uniform(seed, counter, n):
    """The counter-based generator of nngraph/ops/random.py's docstring, rewritten here."""
    def h(x):
        x = x.astype(np.uint64) & 0xFFFFFFFF
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        x ^= x >> 16
        return x
    key = h(np.array([(seed * 0x9E3779B9 + counter * 0x85EBCA6B) & 0xFFFFFFFF], np.uint64))[0]
    return (h(np.arange(n, dtype=np.uint64) ^ key) >> 8).astype(np.float64) * 2.0 ** -24


def test_dropout_rate_scale_and_determinism_by_seed(target):
    from nngraph.ops.random import step_counter
    a = rand((200, 50), 18, "float32", low=0.5, high=1.5)
    x = ng.placeholder(a.shape)
    rate = 0.3
    fn = compile([x], ng.dropout(x, rate, seed=7), target)
    step_counter().value = np.zeros((), np.int64)
    first, second = fn(a), fn(a)
    assert int(step_counter().value) == 2
    for k, out in enumerate((first, second)):
        kept = out != 0
        assert abs(1 - kept.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / a.size)
        np.testing.assert_allclose(out[kept], a[kept] / (1 - rate), rtol=1e-6)
        u = _spec_uniform(7, k, a.size).reshape(a.shape)
        np.testing.assert_array_equal(kept, u >= rate)
    assert (first != 0).mean() != 1 and np.any((first != 0) != (second != 0))  # the mask changes per call
    step_counter().value = np.zeros((), np.int64)
    again = compile([x], ng.dropout(x, rate, seed=7), target)(a)
    np.testing.assert_array_equal(again, first)  # same seed, same counter: same mask
    step_counter().value = np.zeros((), np.int64)
    other = compile([x], ng.dropout(x, rate, seed=8), target)(a)
    assert np.any((other != 0) != (first != 0))
    assert ng.dropout(x, rate, training=False) is x and ng.dropout(x, 0.0) is x
    with pytest.raises(ValueError, match="rate"):
        ng.dropout(x, 1.0)
