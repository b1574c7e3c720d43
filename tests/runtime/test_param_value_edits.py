"""An edit of a parameter's value in place (`W.value[0] = 9`) is either seen by the
next call or refused with an error, on every target: never silently dropped.

On target="gpu" an updated parameter holds its value on the device; `p.value` is a
host copy of it (runtime/gpu_arrays.DeviceValue), so an edit of that copy could not
reach the device: the copy is read-only, and `p.value = ...` is the way to set it."""
import numpy as np
import pytest

import nngraph as ng

import helpers


def _edit_in_place(param, index, value) -> bool:
    """Write value at index of param.value in place; False when the array refuses."""
    try:
        param.value[index] = value
    except ValueError as e:
        assert "read-only" in str(e)
        return False
    return True


def test_an_in_place_edit_of_an_updated_parameter_is_seen_or_refused(target):
    V = ng.parameter(np.ones(3, np.float32), name="V")
    x = ng.placeholder((3,), name="x")
    fn = helpers.compile([x], ng.sum(x * V), updates={V: V * 2.0}, target=target)
    X = np.array([1.0, 2.0, 3.0], np.float32)
    assert float(fn(X)) == 6.0                        # V: 1 -> 2
    seen = _edit_in_place(V, 0, 100.0)
    expected = np.array([100.0, 2.0, 2.0] if seen else [2.0, 2.0, 2.0], np.float32)
    np.testing.assert_array_equal(V.value, expected)  # what the parameter says it holds ...
    assert float(fn(X)) == float(X @ expected)        # ... is what the next call computes with
    np.testing.assert_array_equal(V.value, expected * 2.0)


def test_setting_a_parameter_after_a_device_update_is_seen(target):
    V = ng.parameter(np.ones(3, np.float32), name="V")
    x = ng.placeholder((3,), name="x")
    fn = helpers.compile([x], ng.sum(x * V), updates={V: V * 2.0}, target=target)
    X = np.array([1.0, 2.0, 3.0], np.float32)
    fn(X)
    edited = V.value.copy()
    edited[0] = 100.0
    V.value = edited
    assert float(fn(X)) == float(X @ edited)
    np.testing.assert_array_equal(V.value, edited * 2.0)


def test_the_host_copy_of_a_device_value_is_read_only():
    _gpu_or_skip()
    V = ng.parameter(np.ones(3, np.float32), name="V")
    x = ng.placeholder((3,), name="x")
    fn = ng.compile([x], ng.sum(x * V), updates={V: V * 2.0}, target="gpu")
    fn(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="read-only"):
        V.value[0] = 100.0
    np.testing.assert_array_equal(V.value, [2.0, 2.0, 2.0])


def _gpu_or_skip():
    from nngraph.compiler import target_available
    ok, why = target_available("gpu")
    if not ok:
        pytest.skip(why)


def test_an_in_place_edit_of_a_parameter_the_gpu_copied_is_refused(monkeypatch):
    """A read-only parameter's NumPy value is copied to the device once per value (by
    identity): on a CUDA device an edit in place of that array would never be seen.
    Triton's interpreter shares the memory instead, so the copy is forced here."""
    _gpu_or_skip()
    import torch

    from runtime import gpu
    monkeypatch.setattr(gpu, "upload", lambda a, device: torch.from_numpy(np.array(a, copy=True)))
    W = ng.parameter(np.ones((2, 3), np.float32), name="W")
    x = ng.placeholder((2, 3), name="x")
    fn = ng.compile([x], ng.sum(x * W), target="gpu")
    X = np.ones((2, 3), np.float32)
    assert float(fn(X)) == 6.0
    seen = _edit_in_place(W, (0, 0), 10.0)
    assert float(fn(X)) == (15.0 if seen else 6.0)
    W.value = np.full((2, 3), 2.0, np.float32)        # setting it is the way, and is seen
    assert float(fn(X)) == 12.0


def test_an_in_place_edit_of_a_parameter_a_replay_copied_is_refused(monkeypatch):
    """Replayed calls (runtime/gpu_replay.py, made to run here as the launches they
    capture) read a read-only parameter from storage filled once per value the
    parameter holds (by identity)."""
    _gpu_or_skip()
    from runtime import gpu, gpu_replay
    monkeypatch.setattr(gpu_replay, "capture_cuda_graph", lambda warmup, launches: (warmup(), launches)[1])
    monkeypatch.setattr(gpu, "replay_off_reason", lambda *a: None)
    W = ng.parameter(np.ones((2, 3), np.float32), name="W")
    x = ng.placeholder((2, 3), name="x")
    fn = ng.compile([x], ng.sum(x * W), target="gpu")
    X = np.ones((2, 3), np.float32)
    for _ in range(3):
        assert float(fn(X)) == 6.0
    assert fn.stats()["replayed"]
    W.value = np.full((2, 3), 2.0, np.float32)       # a new array: the replay copies it in
    assert float(fn(X)) == 12.0 and fn.stats()["replayed"]
    seen = _edit_in_place(W, (0, 0), 10.0)
    assert float(fn(X)) == (20.0 if seen else 12.0)
