"""The short path of a target="gpu" call with device tensors (runtime/function.py's
Function.__call__): types and shapes vouched for by the inputs' keys, value checks
(class ids) remembered per tensor and version, so that a call need not wait for the
device. Every way a tensor can change between calls must still reach the checks."""
from __future__ import annotations

import numpy as np
import pytest

from gpu_skip import require_gpu_target

require_gpu_target()

import torch  # noqa: E402

import nngraph as ng  # noqa: E402
from runtime import checks  # noqa: E402


def labelled_step():
    """An SGD step of softmax regression on (x: f32[N,4], y: i32[N]) over 3 classes."""
    x = ng.placeholder(("N", 4), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W = ng.parameter(np.full((4, 3), 0.1, np.float32), name="W")
    loss = ng.cross_entropy(x @ W, y)
    f = ng.compile([x, y], loss, updates={W: W - 0.5 * ng.grad(loss, W)}, target="gpu")
    dev = f.runner.torch_device
    return f, W, torch.ones((2, 4), device=dev), torch.tensor([0, 2], dtype=torch.int32, device=dev)


@pytest.fixture
def reductions(monkeypatch):
    """How many times a device label tensor was reduced (min and max read back)."""
    count = [0]
    real = checks._tensor_min_max

    def counted(t):
        count[0] += 1
        return real(t)
    monkeypatch.setattr(checks, "_tensor_min_max", counted)
    return count


def test_labels_that_passed_are_not_reduced_again_until_written(reductions):
    f, W, X, Y = labelled_step()
    for _ in range(4):
        f(X, Y)
    assert reductions[0] == 1          # one wait for the device, not one per call
    Y[1] = 1                           # written through torch: reduced again, and good
    f(X, Y)
    assert reductions[0] == 2
    f(X, Y.clone())                    # another tensor: reduced
    assert reductions[0] == 3


@pytest.mark.parametrize("write", ["copy_", "setitem", "view fill_", "out="])
def test_a_bad_id_written_into_labels_that_passed_is_refused(write):
    f, W, X, Y = labelled_step()
    for _ in range(3):
        f(X, Y)
    before = W.value.copy()
    bad = torch.tensor([3, 0], dtype=torch.int32, device=Y.device)
    if write == "copy_":
        Y.copy_(bad)
    elif write == "setitem":
        Y[0] = 3
    elif write == "view fill_":
        Y[:1].fill_(3)
    else:
        torch.add(bad, 0, out=Y)
    with pytest.raises(ng.InputError, match=r"input 'y': class id 3 is out of range"):
        f(X, Y)
    np.testing.assert_array_equal(W.value, before)


def test_inference_mode_labels_are_checked_on_every_call(reductions):
    f, W, X, _ = labelled_step()
    with torch.inference_mode():
        Y = torch.tensor([0, 2], dtype=torch.int32, device=X.device)
        Xi = X.clone()
    for _ in range(3):
        f(Xi, Y)
    assert reductions[0] == 3
    with torch.inference_mode():
        Y[0] = -1
    with pytest.raises(ng.InputError, match=r"class id -1 is out of range"):
        f(Xi, Y)


def test_a_tensor_reshaped_in_place_after_known_calls_gets_the_shape_error():
    x = ng.placeholder(("N", 3), name="x")
    f = ng.compile([x], ng.exp(x), target="gpu")
    t = torch.zeros((2, 3), device=f.runner.torch_device)
    for _ in range(3):
        f(t)
    t.resize_(2, 4)
    with pytest.raises(ng.InputError, match=r"input 'x'.*axis 1 must be 3, got 4"):
        f(t)
    t.resize_(3, 3)
    t.t_()                                # not contiguous any more: taken through a copy
    torch.testing.assert_close(f(t), torch.exp(t))


def test_a_signature_is_kept_only_after_every_check_passed(monkeypatch):
    """A call that a size check refuses leaves no signature behind: the next call with
    the same keys is checked again (the short path skips the size checks)."""
    x = ng.placeholder(("N", 3), name="x")
    f = ng.compile([x], ng.exp(x), target="gpu")
    refused = []

    def refuse(vals, env):
        refused.append(env["N"])
        raise MemoryError("too big")
    f._checks = [refuse] + f._checks
    t = torch.zeros((2, 3), device=f.runner.torch_device)
    for _ in range(2):
        with pytest.raises(MemoryError):
            f(t)
    assert refused == [2, 2] and not f._signatures


def test_device_values_handed_out_by_replays_follow_every_step(monkeypatch):
    """A replay hands back the same DeviceValue objects each call; p.value still reads
    the value after the last call, and a second function reading the parameter (its own
    graph storage) copies it again after every step of the first."""
    from runtime import gpu, gpu_replay
    monkeypatch.setattr(gpu_replay, "capture_cuda_graph", lambda warmup, launches: (warmup(), launches)[1])
    monkeypatch.setattr(gpu, "replay_off_reason", lambda *a: None)
    f, W, X, Y = labelled_step()
    x = ng.placeholder(("N", 4), name="x")
    score = ng.compile([x], x @ W, target="gpu")
    values = []
    for _ in range(5):
        f(X, Y)
        values.append(W._state["value"])
        host = W.value
        torch.testing.assert_close(score(X), X @ torch.from_numpy(host).to(X.device))
    assert f.stats()["replayed"] and score.stats()["replayed"]
    assert all(v is values[-1] for v in values[2:])        # replays: one object, no new one per call
    assert not np.array_equal(values[-1].to_numpy(), np.full((4, 3), 0.1, np.float32))


def test_a_step_refused_by_its_index_checks_updates_nothing_when_replayed(monkeypatch):
    """The index checks of ng.take (nngraph/index_guards.py) read their counts after the
    kernels ran; a captured graph writes the updates into the parameters' storage in
    place, so such a step is not captured (stats say why), and its refused calls leave
    the parameters as they were (on an H100 the good call after three refused ones gave
    1.06 instead of 3.49)."""
    from runtime import gpu, gpu_replay
    monkeypatch.setattr(gpu_replay, "capture_cuda_graph", lambda warmup, launches: (warmup(), launches)[1])
    monkeypatch.setattr(gpu, "replay_off_reason", lambda *a: None)
    ids = ng.placeholder(("N",), "int32", name="ids")
    E0 = np.arange(12, dtype=np.float32).reshape(6, 2) / 10
    E = ng.parameter(E0.copy(), name="E")
    loss = ng.sum(ng.take(E, ids, axis=0) ** 2)
    f = ng.compile([ids], loss, updates={E: E - 0.1 * ng.grad(loss, E)}, target="gpu")
    assert f.stats()["replay"].startswith("off: the step's index checks")
    for _ in range(3):
        with pytest.raises(ng.InputError, match="nothing was updated"):
            f(np.array([0, 6], np.int32))
        np.testing.assert_array_equal(E.value, E0)
    got = float(np.asarray(f(np.array([1, 2], np.int32))))
    np.testing.assert_allclose(got, float(np.sum(E0[[1, 2]] ** 2)), rtol=1e-6)


def test_a_replayed_call_that_is_not_committed_does_not_stick_to_a_value_set_by_the_user(monkeypatch):
    """A replay rewrites the parameters' storage before the Function commits. After a
    user sets p.value, a call that ends without committing (an exception after the
    kernels) leaves p.value as the user set it, and the next call copies that value
    into the storage again instead of trusting what it last copied there."""
    from runtime import function, gpu, gpu_replay
    monkeypatch.setattr(gpu_replay, "capture_cuda_graph", lambda warmup, launches: (warmup(), launches)[1])
    monkeypatch.setattr(gpu, "replay_off_reason", lambda *a: None)
    f, W, X, Y = labelled_step()
    x, y = X.cpu().numpy(), Y.cpu().numpy()
    f(x, y)
    f(x, y)                                    # captured here, replayed from now on
    mine = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    W.value = mine
    real = function.Function._run_and_commit

    def interrupted(self, vals, env):          # the kernels run, the call is not committed
        self.runner.run(vals, list(map(function._value_of, self._run_states)), env)
        raise KeyboardInterrupt
    monkeypatch.setattr(function.Function, "_run_and_commit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        f(x, y)
    monkeypatch.setattr(function.Function, "_run_and_commit", real)
    np.testing.assert_array_equal(W.value, mine)
    f(x, y)
    np.testing.assert_allclose(W.value, mine - 0.5 * _softmax_regression_grad(mine, x, y), rtol=1e-5, atol=1e-6)


def _softmax_regression_grad(W, x, y):
    z = x @ W
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return x.T @ p / len(y)


def test_a_replayed_inference_follows_a_read_only_parameter_set_by_the_user(monkeypatch):
    """A function that only reads W keeps W's NumPy value in its storage and skips the
    copy while W holds the same object; a new p.value is copied in at the next call."""
    from runtime import gpu, gpu_replay
    monkeypatch.setattr(gpu_replay, "capture_cuda_graph", lambda warmup, launches: (warmup(), launches)[1])
    monkeypatch.setattr(gpu, "replay_off_reason", lambda *a: None)
    x = ng.placeholder(("N", 4), name="x")
    W = ng.parameter(np.full((4, 3), 0.1, np.float32), name="W")
    score = ng.compile([x], x @ W, target="gpu")
    X = torch.ones((2, 4), device=score.runner.torch_device)
    for scale in (1.0, 1.0, 1.0, -2.0, -2.0):
        if W.value[0, 0] != np.float32(0.1 * scale):
            W.value = np.full((4, 3), 0.1 * scale, np.float32)
        torch.testing.assert_close(score(X).cpu(), torch.full((2, 3), 0.4 * scale))
    assert score.stats()["replayed"]
