"""target="gpu" end to end: graphs compiled through the passes to Triton, run (under
Triton's interpreter without a GPU) and compared with the reference interpreter;
parameters stay on the device between calls; updates are atomic."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("triton")
torch = pytest.importorskip("torch")

import nngraph as ng  # noqa: E402
from runtime import gpu  # noqa: E402

try:
    gpu.device_or_error()
except RuntimeError as e:  # pragma: no cover
    pytest.skip(str(e), allow_module_level=True)

RNG = np.random.default_rng(11)


def mlp(target, seed=0):
    """A 2-layer MLP SGD step on (x: f32[N,6], y: i32[N]); returns (fn, params)."""
    rng = np.random.default_rng(seed)
    x = ng.placeholder(("N", 6), name="x")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    W1 = ng.parameter(rng.standard_normal((6, 8)).astype(np.float32), name="W1")
    b1 = ng.parameter(rng.standard_normal(8).astype(np.float32) * 0.1, name="b1")
    W2 = ng.parameter(rng.standard_normal((8, 4)).astype(np.float32), name="W2")
    ps = [W1, b1, W2]
    logits = ng.relu(x @ W1 + b1) @ W2
    loss = ng.cross_entropy(logits, y)
    acc = ng.mean(ng.cast(ng.equal(ng.cast(ng.argmax(logits, 1), "int32"), y), "float32"))
    gs = ng.grad(loss, ps)
    fn = ng.compile([x, y], [loss, acc], {p: p - 0.1 * g for p, g in zip(ps, gs)}, target=target)
    return fn, ps


def batch(n, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 4, n).astype(np.int32)


def test_mlp_training_steps_match_the_reference_for_several_batch_sizes():
    fg, pg = mlp("gpu")
    fr, pr = mlp("reference")
    for step, n in enumerate([5, 5, 17, 1]):
        X, Y = batch(n, step)
        (lg, ag), (lr, ar) = fg(X, Y), fr(X, Y)
        np.testing.assert_allclose(lg, lr, rtol=1e-4, atol=1e-6)
        assert ag == ar
        for p, q in zip(pg, pr):
            np.testing.assert_allclose(p.value, q.value, rtol=1e-4, atol=1e-5, err_msg=p.name)
    assert isinstance(lg, np.ndarray) and lg.shape == () and lg.dtype == np.float32


def test_parameters_stay_on_the_device_and_a_new_value_is_uploaded(monkeypatch):
    from runtime.gpu_arrays import DeviceValue
    monkeypatch.setenv("NNGRAPH_GPU_REPLAY", "0")   # direct launches on a GPU too (replay: test_gpu_replay.py)
    fn, ps = mlp("gpu")
    X, Y = batch(4)
    fn(X, Y)
    r = fn.runner
    dev = list(r._dev_params)
    states = [p._state["value"] for p in fn.params]
    assert all(isinstance(v, DeviceValue) and v._host is None for v in states)   # nothing copied back yet
    assert all(r._host_params[i] is v for i, v in enumerate(states))
    fn(X, Y)   # updates come back as the parameters' device tensors: nothing uploaded
    assert all(r._host_params[i] is p._state["value"] for i, p in enumerate(fn.params))
    assert all(a is not b for a, b in zip(dev, r._dev_params))       # the fresh update tensors
    host = ps[0].value                                                # the host copy, made once on reading
    assert isinstance(host, np.ndarray) and ps[0].value is host
    # the user sets a value: the next call reads it
    fr, pr = mlp("reference")
    new = np.full((6, 8), 0.01, np.float32)
    ps[0].value = new
    pr[0].value = new
    for p, q in zip(ps[1:], pr[1:]):
        q.value = p.value
    np.testing.assert_allclose(fn(X, Y)[0], fr(X, Y)[0], rtol=1e-5)


def test_a_failing_call_changes_no_parameter():
    x = ng.placeholder((3,), name="x")
    w = ng.parameter(np.array([1.0, 2.0, 3.0], np.float32), name="w")
    out = ng.log(x * w)
    fn = ng.compile([x], ng.sum(out), {w: w + 1.0}, target="gpu", check_numerics=True)
    fn(np.ones(3, np.float32))
    np.testing.assert_array_equal(w.value, [2, 3, 4])
    with pytest.raises(ng.NumericsError, match="non-finite"):
        fn(-np.ones(3, np.float32))
    np.testing.assert_array_equal(w.value, [2, 3, 4])
    fn(np.ones(3, np.float32))
    np.testing.assert_array_equal(w.value, [3, 4, 5])


def test_inputs_are_validated_before_anything_runs():
    fn, ps = mlp("gpu")
    before = [p.value for p in ps]
    with pytest.raises(ng.InputError, match="x"):
        fn(np.zeros((4, 5), np.float32), np.zeros(4, np.int32))
    with pytest.raises(ng.InputError):
        fn(np.zeros((4, 6), np.float64), np.zeros(4, np.int32))
    assert all(p.value is b for p, b in zip(ps, before))


def test_device_outputs_option_returns_torch_tensors():
    x = ng.placeholder(("N",), name="x")
    fn = ng.compile([x], ng.exp(x) * 2, target="gpu")
    fn.runner.device_outputs = True
    v = RNG.standard_normal(9).astype(np.float32)
    out = fn(v)
    assert isinstance(out, torch.Tensor) and out.device.type == fn.runner.device.split(":")[0]
    np.testing.assert_allclose(out.cpu().numpy(), np.exp(v) * 2, rtol=2e-5)


def test_dumps_show_kernels_and_triton_source():
    fn, _ = mlp("gpu")
    assert "triton" in fn.stages() and "kernels" in fn.stages()
    src = fn.dump("triton")
    assert "@triton.jit" in src and "tl.dot(" in src and "def run(b, sizes):" in src
    compile(src, "<dump>", "exec")   # valid Python as printed


def test_dropout_is_bit_identical_to_the_reference():
    x = ng.placeholder(("N", 7), name="x")
    out = ng.dropout(x, 0.3, seed=5)
    fg = ng.compile([x], out, target="gpu")
    fr = ng.compile([x], out, target="reference")
    v = RNG.standard_normal((6, 7)).astype(np.float32)
    counter = ng.ops.random.step_counter()   # shared by both functions; each call advances it
    for c in (0, 3):
        counter.value = np.array(c, np.int64)
        got = fg(v)
        assert int(counter.value) == c + 1
        counter.value = np.array(c, np.int64)
        np.testing.assert_array_equal(got, fr(v))
        assert np.count_nonzero(got) < got.size


def test_softmax_and_log_softmax_of_huge_logits_stay_finite():
    z = ng.placeholder(("N", 5), name="z")
    fn = ng.compile([z], [ng.softmax(z), ng.log_softmax(z)], target="gpu")
    v = np.array([[1e30, -1e30, 0, 3, 88], [1, 2, 3, 4, 5]], np.float32)
    s, ls = fn(v)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(ls))
    e = np.exp(v.astype(np.float64) - v.max(1, keepdims=True))
    np.testing.assert_allclose(s, e / e.sum(1, keepdims=True), atol=1e-7)


def test_no_gpu_and_no_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    x = ng.placeholder((3,), name="x")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ng.compile([x], x * 2, target="gpu")
    from runtime.targets import available
    assert available("gpu") == (True, "")


def test_small_cnn_training_step_matches_the_reference():
    """conv2d (implicit GEMM through views), max pooling and their gradients, on the device."""
    rng = np.random.default_rng(3)
    vals = {"c": (rng.standard_normal((3, 1, 3, 3)) * 0.5).astype(np.float32),
            "f": (rng.standard_normal((3 * 3 * 3, 4)) * 0.3).astype(np.float32)}
    X = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    Y = np.array([1, 3], np.int32)

    def build(target):
        x = ng.placeholder(("N", 1, 6, 6), name="x")
        y = ng.placeholder(("N",), dtype="int32", name="y")
        P = [ng.parameter(v, name=k) for k, v in vals.items()]
        h = ng.max_pool2d(ng.relu(ng.conv2d(x, P[0], padding=1)), 2)
        loss = ng.cross_entropy(h.reshape((-1, 27)) @ P[1], y)
        gs = ng.grad(loss, P)
        return ng.compile([x, y], loss, {p: p - 0.1 * g for p, g in zip(P, gs)}, target=target), P

    (fg, pg), (fr, pr) = build("gpu"), build("reference")
    for _ in range(2):
        np.testing.assert_allclose(fg(X, Y), fr(X, Y), rtol=1e-4, atol=1e-6)
    for p, q in zip(pg, pr):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-4, atol=1e-5)
