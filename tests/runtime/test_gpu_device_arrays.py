"""target="gpu" with device arrays: tensors in, tensors out, no copy on the way in,
checked like NumPy inputs, parameters kept on the device between calls (their host copy
made when p.value is read). Without a GPU, PyTorch CPU tensors stand in for device
tensors (Triton's interpreter runs on them), so the same paths run here."""
from __future__ import annotations

import numpy as np
import pytest

from gpu_skip import require_gpu_target

require_gpu_target()

import torch  # noqa: E402

import nngraph as ng  # noqa: E402
from gpu_models import mlp_batch as batch  # noqa: E402
from gpu_models import mlp_step as mlp  # noqa: E402
from runtime.gpu_arrays import DeviceArray, DeviceValue  # noqa: E402

RNG = np.random.default_rng(5)


def device(fn) -> torch.device:
    return fn.runner.torch_device


def exp_fn():
    x = ng.placeholder(("N", 3), name="x")
    return ng.compile([x], ng.exp(x) * 2.0, target="gpu")


def test_device_tensors_in_give_device_tensors_out_and_numpy_in_gives_numpy():
    fn = exp_fn()
    v = RNG.standard_normal((4, 3)).astype(np.float32)
    out = fn(torch.from_numpy(v).to(device(fn)))
    assert isinstance(out, torch.Tensor) and out.device.type == device(fn).type and out.dtype == torch.float32
    np.testing.assert_allclose(out.cpu().numpy(), np.exp(v) * 2, rtol=2e-6)
    back = fn(v)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_allclose(back, np.exp(v) * 2, rtol=2e-6)


def test_a_device_input_reaches_the_kernels_without_a_copy(monkeypatch):
    fn = exp_fn()
    t = torch.from_numpy(RNG.standard_normal((5, 3)).astype(np.float32)).to(device(fn))
    seen = {}
    real = fn.runner.module.run

    def spy(b, sizes):
        seen["x"] = b["x"].data_ptr()
        return real(b, sizes)

    monkeypatch.setattr(fn.runner.module, "run", spy)
    real_run = fn.runner.run

    def spy_runner(inputs, params, env):   # the tensor itself, never a NumPy view of it
        seen["given"] = inputs[0]
        return real_run(inputs, params, env)

    monkeypatch.setattr(fn.runner, "run", spy_runner)
    fn(t)
    assert seen["x"] == t.data_ptr()
    assert isinstance(seen["given"], DeviceArray) and seen["given"].tensor is t


def test_device_inputs_are_checked_like_numpy_inputs():
    fn = exp_fn()
    dev = device(fn)
    with pytest.raises(ng.InputError, match=r"input 'x': expected f32\[N,3\], got f64\[2,3\]: dtype float64"):
        fn(torch.zeros((2, 3), dtype=torch.float64, device=dev))
    with pytest.raises(ng.InputError, match=r"input 'x': expected f32\[N,3\].*got f32\[2,4\]: axis 1 must be 3"):
        fn(torch.zeros((2, 4), device=dev))
    with pytest.raises(ng.InputError, match=r"input 'x'.*rank 2.*got f32\[6\]"):
        fn(torch.zeros(6, device=dev))
    with pytest.raises(ng.InputError, match=r"input 'x': expected f32\[N,3\] on device .*, got a Tensor on meta"):
        fn(torch.zeros((2, 3), device="meta"))


def test_cast_inputs_casts_a_device_tensor_on_the_device_with_a_warning():
    x = ng.placeholder(("N",), name="x")
    fn = ng.compile([x], x * 3.0, target="gpu", cast_inputs=True)
    t = torch.arange(4, dtype=torch.float64, device=device(fn))
    with pytest.warns(UserWarning, match="casting float64 to float32"):
        out = fn(t)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.cpu().numpy(), [0, 3, 6, 9])


def test_a_non_contiguous_device_tensor_gives_the_same_values():
    fn = exp_fn()
    v = RNG.standard_normal((3, 5)).astype(np.float32)
    t = torch.from_numpy(v).to(device(fn)).T           # (5, 3), not contiguous
    assert not t.is_contiguous()
    np.testing.assert_allclose(fn(t).cpu().numpy(), np.exp(v.T) * 2, rtol=2e-6)


class DLPackOnly:
    """An array of another library: only the DLPack protocol in common with torch."""

    def __init__(self, t):
        self._t = t

    def __dlpack__(self, **kw):
        return self._t.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


def test_any_dlpack_array_is_taken_without_a_copy(monkeypatch):
    fn = exp_fn()
    t = torch.from_numpy(RNG.standard_normal((2, 3)).astype(np.float32)).to(device(fn))
    seen = {}
    real = fn.runner.module.run
    monkeypatch.setattr(fn.runner.module, "run", lambda b, s: (seen.setdefault("x", b["x"].data_ptr()), real(b, s)))
    out = fn(DLPackOnly(t))
    assert seen["x"] == t.data_ptr() and isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.cpu().numpy(), np.exp(t.cpu().numpy()) * 2, rtol=2e-6)


def test_mixed_numpy_and_device_inputs_give_device_outputs():
    fn, _ = mlp("gpu")
    X, Y = batch(5, 0)
    loss, logits = fn(torch.from_numpy(X).to(device(fn)), Y)
    assert isinstance(loss, torch.Tensor) and loss.shape == () and isinstance(logits, torch.Tensor)


def test_training_on_device_tensors_matches_the_reference_and_keeps_parameters_on_the_device():
    fg, pg = mlp("gpu")
    fr, pr = mlp("reference")
    dev = device(fg)
    for step, n in enumerate([5, 5, 9, 5]):
        X, Y = batch(n, step)
        (lg, zg), (lr, zr) = fg(fg.to_device(X), fg.to_device(Y)), fr(X, Y)
        np.testing.assert_allclose(lg.cpu().numpy(), lr, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(zg.cpu().numpy(), zr, rtol=1e-5, atol=1e-5)
        states = [p._state["value"] for p in pg]
        assert all(isinstance(v, DeviceValue) and v.tensor.device.type == dev.type for v in states)
        assert all(v._host is None for v in states)      # no host copy made while training
    for p, q in zip(pg, pr):
        assert isinstance(p.value, np.ndarray)
        np.testing.assert_allclose(p.value, q.value, rtol=1e-5, atol=1e-6, err_msg=p.name)


def test_a_parameter_left_on_the_device_is_read_by_a_function_of_another_target():
    fg, pg = mlp("gpu")
    X, Y = batch(6, 3)
    fg(fg.to_device(X), fg.to_device(Y))
    x = ng.placeholder(("N", 6), name="x")
    h = ng.relu(x @ pg[0] + pg[1])
    want = np.maximum(X @ pg[0].value + pg[1].value, 0)
    np.testing.assert_allclose(ng.compile([x], h, target="reference")(X), want, rtol=1e-5, atol=1e-6)


def test_device_outputs_are_not_overwritten_by_the_next_call():
    fn = exp_fn()
    dev = device(fn)
    a = fn(torch.ones((2, 3), device=dev))
    fn(torch.zeros((2, 3), device=dev))
    np.testing.assert_allclose(a.cpu().numpy(), np.full((2, 3), 2 * np.e, np.float32), rtol=1e-6)


def test_an_output_that_is_also_an_update_does_not_alias_the_parameter():
    x = ng.placeholder((3,), name="x")
    w = ng.parameter(np.ones(3, np.float32), name="w")
    nw = w + x
    fn = ng.compile([x], nw, {w: nw}, target="gpu")
    out = fn(torch.ones(3, device=device(fn)))
    out += 100
    np.testing.assert_array_equal(w.value, [2, 2, 2])
    np.testing.assert_array_equal(fn(np.ones(3, np.float32)), [3, 3, 3])


def test_to_device_copies_once_and_the_copy_is_independent():
    fn = exp_fn()
    v = RNG.standard_normal((4, 3)).astype(np.float32)
    t = fn.to_device(v)
    assert isinstance(t, torch.Tensor) and t.device.type == device(fn).type and t.is_contiguous()
    v[:] = 0
    assert float(t.abs().sum()) > 0
    assert fn.to_device(t) is t or fn.to_device(t).data_ptr() == t.data_ptr()   # already there: no copy
    moved = fn.to_device_if_fits([v, v[:, 0]])
    assert all(isinstance(m, torch.Tensor) for m in moved)


def test_host_targets_keep_numpy_for_to_device():
    x = ng.placeholder((2,), name="x")
    fn = ng.compile([x], x + 1.0, target="reference")
    a = np.arange(4, dtype=np.float32)[::2]
    t = fn.to_device(a)
    assert isinstance(t, np.ndarray) and t.flags.c_contiguous


def test_stats_say_whether_calls_are_replayed(monkeypatch):
    monkeypatch.delenv("NNGRAPH_GPU_REPLAY", raising=False)
    fn, _ = mlp("gpu")
    X, Y = batch(3, 0)
    fn(X, Y)
    fn(X, Y)
    st = fn.stats()
    if fn.runner.device == "cpu":
        assert st["replay"].startswith("off: Triton's interpreter")
        assert st["replayed"] is False and st["captures"] == 0
    else:   # a CUDA device: the second call of the same sizes replays
        assert st["replay"] == "on" and st["replayed"] is True and st["captures"] == 1


def test_a_known_input_signature_still_rejects_wrong_shapes_and_dtypes():
    """Calls with device tensors of a signature seen before skip the per-input checks;
    any other shape or dtype still goes through them and gets their message."""
    x = ng.placeholder(("N", 3), name="x")
    f = ng.compile([x], ng.exp(x), target="gpu")
    dev = device(f)
    ok = torch.zeros((2, 3), device=dev)
    for _ in range(3):
        torch.testing.assert_close(f(ok), torch.ones((2, 3), device=dev))
    assert len(f._signatures) == 1
    with pytest.raises(ng.InputError, match=r"input 'x'.*axis 1 must be 3, got 4"):
        f(torch.zeros((2, 4), device=dev))
    with pytest.raises(ng.InputError, match=r"input 'x'.*float64"):
        f(torch.zeros((2, 3), dtype=torch.float64, device=dev))
    torch.testing.assert_close(f(torch.zeros((3, 2), device=dev).t()), torch.ones((2, 3), device=dev))   # not contiguous: copied
    assert len(f._signatures) == 1


def test_class_ids_on_the_device_are_checked_on_every_call():
    """Out-of-range class ids given as a device tensor raise InputError, also on a call
    whose input signature was seen before (that path skips the shape checks, not the
    value checks), and no parameter changes."""
    x = ng.placeholder(("N", 4), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W = ng.parameter(np.full((4, 3), 0.1, np.float32), name="W")
    loss = ng.cross_entropy(x @ W, y)
    f = ng.compile([x, y], loss, updates={W: W - 0.5 * ng.grad(loss, W)}, target="gpu")
    dev = device(f)
    X = torch.ones((2, 4), device=dev)
    good = torch.tensor([0, 2], dtype=torch.int32, device=dev)
    for _ in range(2):
        f(X, good)
    before = W.value.copy()
    for _ in range(2):
        with pytest.raises(ng.InputError, match=r"input 'y': class id 3 is out of range"):
            f(X, torch.tensor([0, 3], dtype=torch.int32, device=dev))
    np.testing.assert_array_equal(W.value, before)


def test_class_ids_on_the_device_are_checked_in_every_thread_and_dtype():
    """The device check reads min and max through a buffer kept per thread and dtype: a
    negative id, in another thread, after good calls, is still refused."""
    import threading
    z = ng.placeholder(("N", 3), name="z")
    y = ng.placeholder(("N",), "int32", name="y")
    f = ng.compile([z, y], ng.cross_entropy(z, y), target="gpu")
    dev = device(f)
    Z = torch.zeros((2, 3), device=dev)
    np.testing.assert_allclose(float(f(Z, torch.tensor([0, 2], dtype=torch.int32, device=dev))), np.log(3), rtol=1e-6)
    errors = []

    def bad_call():
        try:
            f(Z, torch.tensor([-1, 2], dtype=torch.int32, device=dev))
        except ng.InputError as e:
            errors.append(str(e))
    t = threading.Thread(target=bad_call)
    t.start()
    t.join()
    assert len(errors) == 1 and "class id -1 is out of range" in errors[0]
    with pytest.raises(ng.InputError, match=r"class id 3 is out of range"):
        f(Z, torch.tensor([3, 0], dtype=torch.int32, device=dev))
