"""`None` sizes as TensorFlow 1 and Theano users expect (nngraph/sizes.py): two dynamic
sizes an op needs equal are joined when the graph is built, the textual IR shows one
symbol, and a call whose arrays disagree raises InputError naming both inputs, both
sizes and the op (with its line) that joined them, before any parameter changes."""
import numpy as np
import pytest

import nngraph as ng
from helpers import assert_roundtrip, compile


def _tf1_model():
    x = ng.placeholder((None, 6), name="x")
    y = ng.placeholder((None,), "int32", name="y")
    W = ng.parameter(np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32), name="W")
    b = ng.parameter(np.zeros(3, np.float32), name="b")
    loss = ng.cross_entropy(x @ W + b, y)  # joining line: test_sizes.py:17
    gW, gb = ng.grad(loss, [W, b])
    return x, y, W, b, loss, {W: W - 0.5 * gW, b: b - 0.5 * gb}


def test_tf1_graph_with_none_builds_and_prints_one_symbol():
    x, y, W, b, loss, _ = _tf1_model()
    assert x.shape[0] != y.shape[0]  # the placeholders themselves are immutable
    text = ng.format(loss)
    assert f"%x: f32[{x.shape[0]},6]" in text and f"%y: i32[{x.shape[0]}]" in text
    assert str(y.shape[0]) not in text
    g = ng.parse(text)
    assert ng.format(g) == text
    assert_roundtrip(ng.Graph([x, y], [loss]))


def test_tf1_training_step_runs_and_a_mismatch_names_inputs_sizes_and_op(target):
    x, y, W, b, loss, updates = _tf1_model()
    step = compile([x, y], loss, target, updates=updates)
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8).astype(np.int32)
    first = float(step(X, Y))
    for _ in range(20):
        last = float(step(X, Y))
    assert last < first
    before = (W.value.copy(), b.value.copy())
    if target == "oracle":
        pattern = "inputs that share the size"
    else:
        pattern = (r"input 'y'.*got i32\[7\].* is 8 from an earlier input \(input 'x' axis 0\) but 7 here.*"
                   r"joined by cross_entropy \(built at test_sizes.py:17\)")
    with pytest.raises(ng.InputError, match=pattern):
        step(X, Y[:7])
    np.testing.assert_array_equal(W.value, before[0])
    np.testing.assert_array_equal(b.value, before[1])


def test_elementwise_and_matmul_join_none_sizes(target):
    a = ng.placeholder((None, 3), "float64", name="a")
    c = ng.placeholder((None, 3), "float64", name="c")
    m = ng.placeholder((3, None), "float64", name="m")
    s = a - c
    p = ng.placeholder((None, 4), "float64", name="p")
    prod = m @ p
    assert s.shape[0] == a.shape[0] and prod.shape == (3, 4)
    fn = compile([a, c, m, p], [s, prod], target)
    A, C, M, P = (np.arange(k, dtype=np.float64).reshape(sh) for k, sh in
                  ((6, (2, 3)), (6, (2, 3)), (15, (3, 5)), (20, (5, 4))))
    got_s, got_p = fn(A, C, M, P)
    np.testing.assert_array_equal(got_s, A - C)
    np.testing.assert_array_equal(got_p, M @ P)
    if target != "oracle":
        with pytest.raises(ng.InputError, match=r"'m'.*'p'|'p'.*'m'.*joined by matmul"):
            fn(A, C, M, P[:4])


def test_only_a_literal_1_broadcasts_and_named_sizes_stay_apart():
    x = ng.placeholder((None, 3))
    assert (x + ng.placeholder((1, 3))).shape[0] == x.shape[0]
    with pytest.raises(ng.ShapeError, match="cannot broadcast sizes"):
        x + ng.placeholder((5, 3))
    with pytest.raises(ng.ShapeError, match="cannot broadcast sizes N and M"):
        ng.placeholder(("N",)) + ng.placeholder(("M",))


def test_a_named_size_names_the_class():
    n = ng.placeholder(("N", 2), name="n")
    anon = ng.placeholder((None, 2), name="anon")
    text = ng.format(ng.Graph([n, anon], [n * anon]))
    assert "%anon: f32[N,2]" in text


def test_two_named_sizes_joined_through_none_is_a_shape_error():
    a = ng.placeholder(("N",), name="a")
    b = ng.placeholder(("M",), name="b")
    u = ng.placeholder((None,), name="u")
    with pytest.raises(ng.ShapeError, match=r"sizes [NM] and [NM] are both named"):
        ng.compile([a, b, u], [a + u, b + u], target="reference")


def test_named_sizes_keep_working_and_tell_which_input_bound_them():
    a = ng.placeholder(("N", 2), name="a")
    b = ng.placeholder(("N",), name="b")
    fn = ng.compile([a, b], ng.sum(a, 1) + b, target="reference")
    np.testing.assert_array_equal(fn(np.ones((3, 2), np.float32), np.ones(3, np.float32)), [3, 3, 3])
    with pytest.raises(ng.InputError, match="inputs that share the size N must agree$"):
        fn(np.ones((3, 2), np.float32), np.ones(4, np.float32))
