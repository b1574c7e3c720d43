"""ng.compile on target="reference": calling conventions, dynamic sizes, state,
inspection, and atomic updates (nothing changes when a call raises)."""
import re

import numpy as np
import pytest

import nngraph as ng

TARGET = "reference"


def linreg(seed=0):
    rng = np.random.default_rng(seed)
    x = ng.placeholder(("N", 3), name="x")
    t = ng.placeholder(("N",), name="t")
    w = ng.parameter(rng.standard_normal(3).astype(np.float32), name="w")
    b = ng.parameter(np.float32(0.5), name="b")
    pred = x @ w + b
    loss = ng.mean((pred - t) ** 2.0)
    gw, gb = ng.grad(loss, [w, b])
    return x, t, w, b, pred, loss, {w: w - 0.1 * gw, b: b - 0.1 * gb}


def data(n, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal(n).astype(np.float32)


def test_one_training_step_matches_numpy_and_updates_the_parameters():
    x, t, w, b, pred, loss, ups = linreg()
    fn = ng.compile([x, t], loss, updates=ups, target=TARGET)
    X, T = data(6)
    w0, b0 = w.value.copy(), b.value.copy()
    r = X @ w0 + b0 - T
    out = fn(X, T)
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float32
    np.testing.assert_allclose(out, np.mean(r ** 2), rtol=1e-5)
    np.testing.assert_allclose(w.value, w0 - 0.1 * (2 / 6) * X.T @ r, rtol=1e-5)
    np.testing.assert_allclose(b.value, b0 - 0.1 * (2 / 6) * r.sum(), rtol=1e-5)
    assert w.value.dtype == np.float32 and b.value.shape == ()
    losses = [float(fn(X, T)) for _ in range(20)]
    assert losses[-1] < losses[0]


def test_inputs_by_position_and_by_name_agree():
    x, t, w, b, pred, loss, _ = linreg()
    fn = ng.compile([x, t], [pred, loss], target=TARGET)
    X, T = data(4)
    a = fn(X, T)
    for other in (fn(x=X, t=T), fn(t=T, x=X), fn(X, t=T)):
        for u, v in zip(a, other):
            np.testing.assert_array_equal(u, v)


def test_one_output_gives_an_array_a_list_gives_a_list():
    x, t, w, b, pred, loss, _ = linreg()
    X, T = data(4)
    single = ng.compile([x, t], pred, target=TARGET)(X, T)
    assert isinstance(single, np.ndarray) and single.shape == (4,)
    listed = ng.compile([x, t], [pred], target=TARGET)(X, T)
    assert isinstance(listed, list) and len(listed) == 1
    np.testing.assert_array_equal(listed[0], single)
    both = ng.compile([x, t], [loss, pred], target=TARGET)(X, T)
    assert [o.shape for o in both] == [(), (4,)]
    assert all(isinstance(o, np.ndarray) for o in both)


def test_dynamic_sizes_take_any_batch_without_recompiling():
    x, t, w, b, pred, loss, _ = linreg()
    fn = ng.compile([x, t], [pred, loss], target=TARGET)
    runner = fn.runner
    for n in (1, 7, 3, 64):
        X, T = data(n, seed=n)
        p, l = fn(X, T)
        assert p.shape == (n,)
        np.testing.assert_allclose(p, X @ w.value + b.value, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(l, np.mean((X @ w.value + b.value - T) ** 2), rtol=1e-5)
    assert fn.runner is runner


def test_params_stages_dump_and_stats():
    x, t, w, b, pred, loss, ups = linreg()
    fn = ng.compile([x, t], loss, updates=ups, target=TARGET)
    assert fn.params == [w, b]
    assert fn.stages()[:2] == ["graph", "opt"]
    text = fn.dump("graph")
    assert text == ng.format(fn.graph)
    assert text.startswith("func @main(%x: f32[N,3], %t: f32[N]) state(%w: f32[3], %b: f32[]) {")
    assert "  update %w <- %" in text and "  update %b <- %" in text
    assert ng.format(ng.parse(fn.dump("opt"))) == fn.dump("opt")
    with pytest.raises(ValueError, match=r"no stage .llvm. for target reference; stages: graph, opt"):
        fn.dump("llvm")
    st = fn.stats()
    assert {"kernels", "library_calls", "peak_bytes", "compile_seconds", "cache_hit"} <= set(st)
    assert isinstance(st["kernels"], int) and isinstance(st["library_calls"], int)
    assert isinstance(st["peak_bytes"], int) and st["peak_bytes"] >= 0
    assert 0 < st["compile_seconds"] < 60 and isinstance(st["cache_hit"], bool)


def test_fn_params_include_parameters_only_read():
    x = ng.placeholder((2,), name="x")
    a = ng.parameter(np.ones(2, np.float32), name="a")
    c = ng.parameter(np.ones(2, np.float32), name="c")
    fn = ng.compile([x], x * a, updates={c: c + 1.0}, target=TARGET)
    assert set(map(id, fn.params)) == {id(a), id(c)} and len(fn.params) == 2


def test_updates_see_the_values_before_the_call():
    a = ng.parameter(np.array([1.0, 2.0], np.float32), name="a")
    b = ng.parameter(np.array([10.0, 20.0], np.float32), name="b")
    fn = ng.compile([], [a + b], updates={a: b, b: a + b}, target=TARGET)
    (s,) = fn()
    np.testing.assert_array_equal(s, [11.0, 22.0])
    np.testing.assert_array_equal(a.value, [10.0, 20.0])  # the old b
    np.testing.assert_array_equal(b.value, [11.0, 22.0])  # old a + old b, not new a + old b


def test_outputs_do_not_alias_parameter_state():
    a = ng.parameter(np.array([1.0, 2.0], np.float32), name="a")
    x = ng.placeholder((2,), name="x")
    fn = ng.compile([x], [a, x * 2.0], updates={a: x}, target=TARGET)
    X = np.array([5.0, 6.0], np.float32)
    old, _ = fn(X)
    old[:] = -1
    X[:] = -2  # the update took X's values, not the caller's array
    np.testing.assert_array_equal(a.value, [5.0, 6.0])
    new, _ = fn(np.array([7.0, 8.0], np.float32))
    new[:] = -3
    np.testing.assert_array_equal(a.value, [7.0, 8.0])


def test_check_numerics_names_op_and_line_and_leaves_every_parameter_unchanged():
    x = ng.placeholder((3,), name="x")
    p = ng.parameter(np.array([1.0, 2.0, 3.0], np.float32), name="p")
    q = ng.parameter(np.array([4.0, 5.0, 6.0], np.float32), name="q")
    bad = ng.log(q - x)  # NaN where x > q
    bad_line = bad.where
    fn = ng.compile([x], (x * p).sum(), updates={p: p + x, q: q + bad}, target=TARGET, check_numerics=True)
    fn(np.zeros(3, np.float32))  # finite: both updates land
    np.testing.assert_array_equal(p.value, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(q.value, [4 + np.log(4), 5 + np.log(5), 6 + np.log(6)], rtol=1e-6)
    p0, q0 = p.value.copy(), q.value.copy()
    with pytest.raises(ng.NumericsError) as e:
        fn(np.array([0.0, 100.0, 0.0], np.float32))
    msg = str(e.value)
    assert re.match(r"^log made a non-finite value \(NaN\)", msg)
    assert bad_line.startswith("test_compile_reference.py:") and bad_line in msg
    np.testing.assert_array_equal(p.value, p0)
    np.testing.assert_array_equal(q.value, q0)


def test_without_check_numerics_nan_flows_through():
    x = ng.placeholder((1,), name="x")
    fn = ng.compile([x], ng.log(x), target=TARGET)
    assert np.isnan(fn(np.array([-1.0], np.float32))[0])


def test_an_input_error_changes_no_parameter():
    x, t, w, b, pred, loss, ups = linreg()
    fn = ng.compile([x, t], loss, updates=ups, target=TARGET)
    w0 = w.value.copy()
    X, T = data(5)
    with pytest.raises(ng.InputError):
        fn(X, T[:4])
    np.testing.assert_array_equal(w.value, w0)


def test_an_update_of_the_wrong_shape_is_a_shape_error_at_compile():
    x = ng.placeholder(("N", 3), name="x")
    W = ng.parameter(np.zeros((3, 2), np.float32), name="W")
    with pytest.raises(ng.ShapeError) as e:
        ng.compile([x], (x @ W).sum(), updates={W: W.sum(axis=0)}, target=TARGET)
    msg = str(e.value)
    assert msg.startswith("compile: update of parameter W: f32[3,2] has shape [2]")
    assert "test_compile_reference.py:" in msg


def test_an_unknown_target_or_opt_level_is_refused():
    x = ng.placeholder((2,), name="x")
    with pytest.raises(ValueError, match="unknown target 'tpu'"):
        ng.compile([x], x, target="tpu")
    with pytest.raises(ValueError, match="opt_level must be 0, 1 or 2"):
        ng.compile([x], x, target=TARGET, opt_level=5)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_every_opt_level_computes_the_same(level):
    x, t, w, b, pred, loss, _ = linreg()
    X, T = data(5)
    got = ng.compile([x, t], [pred, loss], target=TARGET, opt_level=level)(X, T)
    np.testing.assert_allclose(got[0], X @ w.value + b.value, rtol=1e-5, atol=1e-6)
