"""When target="gpu" captures and replays a call's launches (runtime/gpu_replay.py), and
how a parameter's storage for the captured graphs is brought up to date. Runs without
a GPU: the graphs themselves are tested in test_gpu_replay.py, on a CUDA device."""
from __future__ import annotations

import numpy as np

from gpu_skip import require_gpu_target

require_gpu_target()

import torch  # noqa: E402

import nngraph as ng  # noqa: E402
from runtime.gpu_arrays import DeviceValue  # noqa: E402
from runtime.gpu_replay import StaticParams, replay_off_reason  # noqa: E402


def program(n_kernels):
    x = ng.placeholder(("N", 4), name="x")
    w = ng.parameter(np.ones((4, 3), np.float32), name="w")
    if n_kernels == 1:
        fn = ng.compile([x], ng.exp(x), target="gpu")
        assert fn.runner.program.kernel_count() == 1
    else:
        fn = ng.compile([x], ng.softmax(ng.exp(x) @ w), {w: w * 0.5}, target="gpu")
        assert fn.runner.program.kernel_count() >= 2
    return fn.runner.program


def test_replay_is_on_for_cuda_programs_single_launches_included(monkeypatch):
    monkeypatch.delenv("NNGRAPH_GPU_REPLAY", raising=False)
    many, one = program(2), program(1)
    assert replay_off_reason("cuda", False, many) is None
    assert replay_off_reason("cuda", False, one) is None   # a graph launch costs less than a Triton launch
    assert "interpreter" in replay_off_reason("cpu", False, many)
    assert "check_numerics" in replay_off_reason("cuda", True, many)
    monkeypatch.setenv("NNGRAPH_GPU_REPLAY", "1")
    assert replay_off_reason("cuda", False, one) is None
    monkeypatch.setenv("NNGRAPH_GPU_REPLAY", "0")
    assert replay_off_reason("cuda", False, many) == "NNGRAPH_GPU_REPLAY=0"


def test_static_parameter_storage_copies_only_a_value_it_does_not_hold():
    p = program(2)
    assert len(p.params) == 1
    sp = StaticParams(p, torch.device("cpu"))
    (t,) = sp.storage()
    host = np.full(t.shape, 2.0, np.float32)
    sp.fill([host])
    assert float(t.sum()) == 2.0 * t.numel()
    t.fill_(7.0)                        # as a replay writes the storage in place
    sp.fill([host])                     # the same value as before: not copied again
    assert float(t[0, 0]) == 7.0
    sp.fill([DeviceValue(t)])           # its own storage: nothing to copy
    assert float(t[0, 0]) == 7.0
    other = torch.full(t.shape, 3.0)
    sp.fill([DeviceValue(other)])       # another function's device value
    assert float(t[0, 0]) == 3.0
    sp.fill([np.zeros(t.shape, np.float32)])   # the user set p.value
    assert float(t.abs().sum()) == 0.0
