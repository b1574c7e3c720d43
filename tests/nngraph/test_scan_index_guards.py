"""Lookups inside ng.scan bodies: an out-of-range id raises ng.InputError at call time on
every target (naming the op, the user's line and the loop), no parameter is updated, and
good ids still give the right values and gradients (nngraph/loop_guards.py)."""
import numpy as np
import pytest

import nngraph as ng
from helpers import compile, rand

V, D, N = 6, 3, 2


def _compiled_only(target):
    if target == "oracle":
        pytest.skip("the index check is added by ng.compile; the oracle runs the graph as built")


def _params():
    E = ng.parameter(rand((V, D), 1), name="E")
    U = ng.parameter(rand((D, D), 2) * 0.5, name="U")
    return E, U


def _embedding_rnn(computed=False):
    """h_t = tanh(E[ids_t (+ counter)] + h @ U); the ids are a slice of xs, or computed from the carry."""
    ids = ng.placeholder(("T", N), "int32", name="ids")
    h0 = ng.placeholder((N, D), "float64", name="h0")
    E, U = _params()

    def step(carry, i):
        h, c = carry
        look = i + c if computed else i
        return (ng.tanh(ng.take(E, look) + h @ U), c), None

    (hT, _), _ = ng.scan(step, (h0, ng.constant(np.zeros(N, np.int32))), ids)
    loss = ng.sum(hT * hT)
    return ids, h0, E, U, loss


def _numpy(I, H, E, U):
    h = H
    for t in range(len(I)):
        h = np.tanh(E[I[t]] + h @ U)
    return np.sum(h * h)


@pytest.mark.parametrize("computed", [False, True])
def test_bad_id_in_a_scan_step_raises_and_updates_nothing(target, computed):
    _compiled_only(target)
    ids, h0, E, U, loss = _embedding_rnn(computed)
    gE, gU = ng.grad(loss, [E, U])
    fn = compile([ids, h0], loss, target, updates={E: E - 0.1 * gE, U: U - 0.1 * gU})
    H = rand((N, D), 3).astype(np.float64)
    before = E.value.copy(), U.value.copy()
    for bad in (V, -V - 1, 2**31 - 1):
        I = np.array([[0, 1], [2, bad], [3, 4]], np.int32)
        with pytest.raises(ng.InputError, match=r"take \(built at test_scan_index_guards.py:\d+, inside the "
                                                r"ng.scan built at test_scan_index_guards.py:\d+\).*"
                                                rf"\[-{V}, {V}\).*nothing was updated"):
            fn(I, H)
        np.testing.assert_array_equal(E.value, before[0])
        np.testing.assert_array_equal(U.value, before[1])
    good = np.array([[0, 1], [2, -6], [5, 4]], np.int32)
    want = _numpy(good, H, *before)
    np.testing.assert_allclose(fn(good, H), want, rtol=1e-5)
    assert not np.array_equal(E.value, before[0])


def test_the_input_ids_are_named_and_quoted(target):
    _compiled_only(target)
    ids, h0, E, U, loss = _embedding_rnn()
    fn = compile([ids, h0], loss, target)
    with pytest.raises(ng.InputError, match=r"input 'ids' out of range, e.g. 9"):
        fn(np.array([[0, 9]], np.int32), np.zeros((N, D)))


def test_gradient_alone_checks_the_scatter_add_of_the_reverse_scan(target):
    """Only dE is asked for: a bad id still fails the call (the scatter-add's ids are marked by check_index)."""
    ids = ng.placeholder(("T", N), "int32", name="ids")
    E, _ = _params()

    def step(acc, i):
        return acc + ng.sum(ng.take(E, i)), None

    total, _ = ng.scan(step, ng.constant(np.zeros((), np.float64)), ids)
    fn = compile([ids], ng.grad(total, E), target)
    I = np.array([[0, 1], [1, 5], [-1, 2]], np.int32)
    want = np.zeros((V, D))
    np.add.at(want, I.reshape(-1), 1.0)
    np.testing.assert_allclose(fn(I), want)
    _compiled_only(target)
    with pytest.raises(ng.InputError, match=r"(take|check_index) \(built at test_scan_index_guards.py:\d+, "
                                            r"inside the ng.scan.*input .ids. out of range, e.g. 6"):
        fn(np.array([[0, 1], [1, 6]], np.int32))


def test_gradients_with_good_ids_match_finite_differences(target):
    ids, h0, E, U, loss = _embedding_rnn(computed=True)
    gE, gU = ng.grad(loss, [E, U])
    fn = compile([ids, h0], [gE, gU], target)
    I = np.array([[0, 1], [2, 1], [1, 0]], np.int32)
    H = rand((N, D), 3).astype(np.float64)
    got_E, got_U = fn(I, H)
    e0, u0 = E.value.copy(), U.value.copy()

    def f(e, u):
        return _numpy(I, H, e, u)
    for got, base, which in ((got_E, e0, 0), (got_U, u0, 1)):
        num = np.zeros_like(base)
        for k in np.ndindex(base.shape):
            d = np.zeros_like(base)
            d[k] = 1e-6
            args = [(e0 + d, u0), (e0 - d, u0)] if which == 0 else [(e0, u0 + d), (e0, u0 - d)]
            num[k] = (f(*args[0]) - f(*args[1])) / 2e-6
        np.testing.assert_allclose(got, num, rtol=1e-3, atol=1e-4)


def test_class_ids_computed_in_a_step_are_checked(target):
    _compiled_only(target)
    xs = ng.placeholder(("T", N, 4), "float64", name="xs")
    ys = ng.placeholder(("T", N), "int32", name="ys")

    def step(acc, xy):
        x, y = xy
        return acc + ng.cross_entropy(x, y + 1), None

    total, _ = ng.scan(step, ng.constant(np.zeros((), np.float64)), (xs, ys))
    fn = compile([xs, ys], total, target)
    X = rand((2, N, 4), 5)
    assert np.isfinite(fn(X, np.array([[0, 1], [2, -1]], np.int32)))
    with pytest.raises(ng.InputError, match=r"cross_entropy \(built at .*inside the ng.scan built at "
                                            r".*class id 4 computed at"):
        fn(X, np.array([[0, 1], [3, 0]], np.int32))


def test_gradient_of_a_take_alone_is_checked_outside_loops_too(target):
    _compiled_only(target)
    ids = ng.placeholder(("N",), "int32", name="ids")
    E, _ = _params()
    fn = compile([ids], ng.grad(ng.sum(ng.take(E, ids)), E), target)
    np.testing.assert_allclose(fn(np.array([1, 1, -1], np.int32))[:, 0], [0, 2, 0, 0, 0, 1])
    with pytest.raises(ng.InputError, match=r"check_index .*input 'ids' out of range, e.g. -7"):
        fn(np.array([1, -7], np.int32))


def test_lookups_in_a_nested_scan_are_checked(target):
    _compiled_only(target)
    ids = ng.placeholder(("T", "S"), "int32", name="ids")
    E, _ = _params()

    def inner(acc, i):
        return acc + ng.sum(ng.take(E, i + 1)), None

    def outer(acc, row):
        total, _ = ng.scan(inner, acc, row)
        return total, None

    total, _ = ng.scan(outer, ng.constant(np.zeros((), np.float64)), ids)
    fn = compile([ids], total, target)
    I = np.array([[0, 1], [4, -2]], np.int32)
    np.testing.assert_allclose(fn(I), E.value[I + 1].sum(), rtol=1e-12)
    with pytest.raises(ng.InputError, match=r"take \(built at .*inside the ng.scan built at .*ids built at"):
        fn(np.array([[0, 1], [5, 0]], np.int32))
