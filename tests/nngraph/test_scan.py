"""ng.scan: values from one compile for every length, reverse scans, tuple carries,
closed-over values, and the build-time errors of bad step functions."""
import numpy as np
import pytest

import nngraph as ng
from helpers import assert_roundtrip, compile, rand


def _elman(T="T", n=3, f=4, h=5, seed=0):
    xs = ng.placeholder((T, n, f), "float64", name="xs")
    h0 = ng.placeholder((n, h), "float64", name="h0")
    W = ng.parameter(rand((f, h), seed) * 0.5, name="W")
    U = ng.parameter(rand((h, h), seed + 1) * 0.3, name="U")
    b = ng.parameter(rand((h,), seed + 2), name="b")

    def step(hp, x):
        hn = ng.tanh(x @ W + hp @ U + b)
        return hn, 2.0 * hn

    hT, ys = ng.scan(step, h0, xs)
    return (xs, h0, W, U, b), hT, ys


def _elman_numpy(X, H, W, U, b, reverse=False):
    h, ys = H, np.zeros(X.shape[:2] + (H.shape[1],))
    for t in (reversed(range(len(X))) if reverse else range(len(X))):
        h = np.tanh(X[t] @ W + h @ U + b)
        ys[t] = 2.0 * h
    return h, ys


def test_values_for_lengths_0_1_7_and_500_from_one_compile():
    (xs, h0, W, U, b), hT, ys = _elman()
    fn = compile([xs, h0], [hT, ys])
    H = rand((3, 5), 7)
    for T in (0, 1, 7, 500):
        X = rand((T, 3, 4), T)
        got_h, got_ys = fn(X, H)
        want_h, want_ys = _elman_numpy(X, H, W.value, U.value, b.value)
        np.testing.assert_allclose(got_h, want_h, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12, atol=1e-12)
        assert got_ys.shape == (T, 3, 5)
    assert fn.graph.outputs[1].shape[0] == ng.Dim("T")


def test_length_zero_returns_init_and_empty_ys():
    (xs, h0, *_), hT, ys = _elman()
    H = rand((3, 5), 1)
    got_h, got_ys = compile([xs, h0], [hT, ys])(np.zeros((0, 3, 4)), H)
    np.testing.assert_array_equal(got_h, H)
    assert got_ys.shape == (0, 3, 5)


def test_reverse_scan_runs_from_the_last_step_and_keeps_ys_in_time_order():
    xs = ng.placeholder(("T", 3, 4), "float64", name="xs")
    h0 = ng.placeholder((3, 5), "float64", name="h0")
    W, U, b = rand((4, 5), 1), rand((5, 5), 2) * 0.3, rand((5,), 3)

    def step(hp, x):
        hn = ng.tanh(x @ W + hp @ U + b)
        return hn, 2.0 * hn

    hT, ys = ng.scan(step, h0, xs, reverse=True)
    X, H = rand((6, 3, 4), 4), rand((3, 5), 5)
    got_h, got_ys = compile([xs, h0], [hT, ys])(X, H)
    want_h, want_ys = _elman_numpy(X, H, W, U, b, reverse=True)
    np.testing.assert_allclose(got_h, want_h, rtol=1e-12)
    np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12)


def test_tuple_carries_tuple_xs_and_tuple_ys():
    a = ng.placeholder(("T", 2), "float64", name="a")
    c = ng.placeholder(("T",), "float64", name="c")

    def step(carry, x):
        s, m = carry
        xa, xc = x
        return (s + xa * xc, ng.maximum(m, xa)), (s, [xc * 2.0])

    (s, m), (ys_s, [ys_c]) = ng.scan(step, (ng.constant(np.zeros(2)), ng.constant(np.full(2, -np.inf))), (a, c))
    A, C = rand((5, 2), 1), rand((5,), 2)
    got = compile([a, c], [s, m, ys_s, ys_c])(A, C)
    prefix = np.cumsum(A * C[:, None], axis=0)
    np.testing.assert_allclose(got[0], prefix[-1])
    np.testing.assert_allclose(got[1], A.max(axis=0))
    np.testing.assert_allclose(got[2], np.vstack([np.zeros(2), prefix[:-1]]))
    np.testing.assert_allclose(got[3], 2 * C)


def test_xs_none_with_a_length_and_ys_none():
    n = ng.placeholder(("N", 3), "float64", name="n")
    (count, total), none = ng.scan(lambda cv, _: ((cv[0] + 1.0, cv[1] * 2.0), None),
                                   (ng.constant(0.0, "float64"), n), None, length=4)
    assert none is None
    got = compile([n], [count, total])(np.ones((2, 3)))
    assert got[0] == 4.0
    np.testing.assert_array_equal(got[1], np.full((2, 3), 16.0))
    # a dynamic length given as the size of another input
    q = ng.placeholder(("L", 2), "float64", name="q")
    last, steps = ng.scan(lambda cv, _: (cv + 1.0, cv), ng.constant(0.0, "float64"), None, length=q.shape[0])
    got = compile([q], [last, steps])(np.zeros((3, 2)))
    assert got[0] == 3.0 and list(got[1]) == [0.0, 1.0, 2.0]


def test_closed_over_values_come_in_as_inputs_and_invariants_are_hoisted():
    (xs, h0, W, U, b), hT, ys = _elman()
    node = hT.inputs[0]
    body = node.attrs["body"]
    assert any(i is W for i in node.inputs) and any(i is b for i in node.inputs)
    assert not any(isinstance(n, ng.Parameter) for n in body.nodes())
    # an expression of loop-invariant values written inside the step is computed outside
    Ut = ng.parameter(np.eye(5), name="Ut")
    hT2, _ = ng.scan(lambda hp, x: (hp @ (Ut.T * 2.0), hp), h0, xs)
    scan2 = hT2.inputs[0]
    assert [n.op for n in scan2.inputs[2:]] == ["mul"]
    assert "transpose" not in {n.op for n in scan2.attrs["body"].nodes()}
    # but a transpose only products read stays in the step: the product reads Ut transposed
    hT3, _ = ng.scan(lambda hp, x: (hp @ Ut.T, hp), h0, xs)
    scan3 = hT3.inputs[0]
    assert scan3.inputs[2:] == (Ut,)
    assert "transpose" in {n.op for n in scan3.attrs["body"].nodes()}


def test_nested_scans_run_and_print():
    m = ng.placeholder(("T", "K"), "float64", name="m")

    def row(acc, r):
        inner, _ = ng.scan(lambda c, v: (c + v * acc, None), ng.constant(0.0, "float64"), r)
        return acc + inner, inner

    tot, rows = ng.scan(row, ng.constant(1.0, "float64"), m)
    M = rand((3, 4), 1)
    acc, want = 1.0, []
    for r in M:
        inner = float(np.sum(r * acc))
        want.append(inner)
        acc += inner
    got = compile([m], [tot, rows])(M)
    np.testing.assert_allclose(got[0], acc)
    np.testing.assert_allclose(got[1], want)
    assert_roundtrip(ng.Graph([m], [tot, rows]))


def test_textual_ir_prints_the_body_nested_and_parses_back():
    (xs, h0, *_), hT, ys = _elman()
    text = assert_roundtrip(ng.Graph([xs, h0], [hT, ys]))
    assert "scan %h0, %xs" in text and "{length=T, reverse=false}" in text
    assert "^(%carry0: f64[3,5]; %x0: f64[3,4]; %W: f64[4,5], %U: f64[5,5], %b: f64[5]):" in text
    assert "scan_output" in text and "yield" in text
    g = ng.parse(text)
    H, X = rand((3, 5), 1), rand((4, 3, 4), 2)
    want = _elman_numpy(X, H, *[np.zeros(s) for s in ((4, 5), (5, 5), (5,))])
    got = compile(g.inputs, g.outputs)(X, H)   # parsed parameters hold zeros
    np.testing.assert_allclose(got[0], want[0])


def test_parse_errors_in_a_scan_body_name_the_line():
    (xs, h0, *_), hT, ys = _elman()
    text = ng.format(ng.Graph([xs, h0], [hT, ys]))
    assert "    yield %4; %6\n" in text
    with pytest.raises(ng.ParseError, match="line 11: expected 'yield"):
        ng.parse(text.replace("yield %4; %6", "yield %4"))
    with pytest.raises(ng.ParseError, match="line 11: the body takes 1 carries but yields 2"):
        ng.parse(text.replace("yield %4; %6", "yield %4, %4; %6"))
    with pytest.raises(ng.ParseError, match="line 5: %9 is not defined"):
        ng.parse(text.replace("matmul %carry0, %U", "matmul %9, %U"))
    with pytest.raises(ng.ParseError, match="line 12: text after the scan body's 'yield'"):
        ng.parse(text.replace("  }\n", ""))


def test_a_step_that_changes_the_carry_type_is_a_build_time_error_naming_the_line():
    xs = ng.placeholder(("T", 3), name="xs")
    with pytest.raises(ng.ShapeError, match=r"test_scan.py:\d+.*carry 0 as f64\[3\].*f32\[3\]"):
        ng.scan(lambda c, x: (ng.cast(c + x, "float64"), None), ng.constant(np.zeros(3, np.float32)), xs)
    with pytest.raises(ng.ShapeError, match=r"scan \(built at test_scan.py:\d+\).*carry 0 as f32\[3,3\]"):
        ng.scan(lambda c, x: (c[:, None] + x, None), ng.constant(np.zeros(3, np.float32)), xs)
    with pytest.raises(ng.ShapeError, match="structure"):
        ng.scan(lambda c, x: ((c, c), None), ng.constant(np.zeros(3, np.float32)), xs)


def test_xs_of_different_lengths_are_a_build_time_error_naming_the_line():
    a = ng.placeholder((7, 3), name="a")
    b = ng.placeholder((5, 3), name="b")
    with pytest.raises(ng.ShapeError, match=r"scan \(built at test_scan.py:\d+\): xs disagree.*a: f32\[7,3\].*b: f32\[5,3\]"):
        ng.scan(lambda c, x: (c + x[0] + x[1], None), ng.constant(np.zeros(3, np.float32)), (a, b))
    with pytest.raises(ng.ShapeError, match="length 4"):
        ng.scan(lambda c, x: (c + x, None), ng.constant(np.zeros(3, np.float32)), a, length=4)
    with pytest.raises(ng.ShapeError, match="give length"):
        ng.scan(lambda c, x: (c, None), ng.constant(0.0), None)
    t1, t2 = ng.placeholder(("T", 3), name="t1"), ng.placeholder(("S", 3), name="t2")
    with pytest.raises(ng.ShapeError, match="disagree"):
        ng.scan(lambda c, x: (c + x[0] + x[1], None), ng.constant(np.zeros(3, np.float32)), (t1, t2))


def test_a_scan_compiles_for_cpu_as_one_loop():
    (xs, h0, W, U, b), hT, ys = _elman()
    fn = ng.compile([xs, h0], [hT, ys], target="cpu")      # passes/lower/scan.py
    X, H = rand((6, 3, 4), 1), rand((3, 5), 2)
    want_h, want_ys = _elman_numpy(X, H, W.value, U.value, b.value)[:2]
    got_h, got_ys = fn(X, H)
    np.testing.assert_allclose(got_h, want_h, rtol=1e-10)
    np.testing.assert_allclose(got_ys, want_ys, rtol=1e-10)


def test_check_numerics_names_the_op_inside_the_loop():
    xs = ng.placeholder(("T", 3), "float64", name="xs")
    h, _ = ng.scan(lambda c, x: (c + ng.log(x), None), ng.constant(np.zeros(3)), xs)
    fn = compile([xs], h, check_numerics=True)
    # the accumulated log(x) is computed for all steps after the loop (passes/loop_sink.py): named all the same
    with pytest.raises(ng.NumericsError, match=r"^log made a non-finite value \(NaN\) in f64\[T,3\] built at "
                                               r"test_scan.py:\d+"):
        fn(np.array([[1.0, 2.0, 3.0], [-1.0, 1.0, 1.0]]))
    oracle = compile([xs], h, check_numerics=True, target="oracle")
    with pytest.raises(ng.NumericsError, match=r"^log made a non-finite value \(NaN\) in f64\[3\] built at "
                                               r"test_scan.py:\d+, in a step of the loop \(scan\)"):
        oracle(np.array([[1.0, 2.0, 3.0], [-1.0, 1.0, 1.0]]))


def test_a_running_total_that_is_also_read_per_step_stays_in_the_loop():
    """`c + g` is an accumulator passes/loop_sink.py moves after the loop, unless the
    step reads the running total itself (here as ys = 2·total): then every step needs
    it (this failed to compile with 'placeholder carry0 is used but is not a graph
    input')."""
    xs = ng.placeholder(("T", 4), "float64", name="xs")

    def step(c, x):
        total = ng.exp(x) + c
        return total, 2.0 * total

    cT, ys = ng.scan(step, ng.constant(np.zeros(4)), xs)
    X = rand((6, 4), 3)
    got_c, got_ys = compile([xs], [cT, ys])(X)
    want = np.cumsum(np.exp(X), axis=0)
    np.testing.assert_allclose(got_c, want[-1], rtol=1e-12)
    np.testing.assert_allclose(got_ys, 2.0 * want, rtol=1e-12)
