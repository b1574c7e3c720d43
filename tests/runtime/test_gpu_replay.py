"""Launch replay: a call's launch sequence captured once per set of sizes and replayed,
with the same results as direct launches and the reference, parameters kept in the
graphs' storage, outputs that survive the next call.

Each test runs twice: with real CUDA graphs ("cuda-graphs", skipped without a CUDA
device: Triton's interpreter has none), and with a stand-in capture that replays by
launching the same kernels again on the same static buffers ("stand-in"), so that
everything around the graph (static inputs, parameter storage, the copy of updates
into it, outputs copied out) is checked under the interpreter too."""
from __future__ import annotations

import numpy as np
import pytest

from gpu_skip import require_cuda, require_gpu_target

require_gpu_target()

import torch  # noqa: E402

import nngraph as ng  # noqa: E402
from gpu_models import mlp_batch as batch  # noqa: E402
from gpu_models import mlp_step as mlp  # noqa: E402
from runtime import gpu, gpu_replay  # noqa: E402


def rerun_launches(warmup, launches):
    warmup()
    return launches


@pytest.fixture(params=["cuda-graphs", "stand-in"], autouse=True)
def replay_mode(request, monkeypatch):
    monkeypatch.delenv("NNGRAPH_GPU_REPLAY", raising=False)
    if request.param == "cuda-graphs":
        require_cuda()
    else:
        monkeypatch.setattr(gpu_replay, "capture_cuda_graph", rerun_launches)
        monkeypatch.setattr(gpu, "replay_off_reason", lambda *a: None)
    return request.param


def test_replayed_training_steps_match_the_reference():
    fg, pg = mlp("gpu")
    fr, pr = mlp("reference")
    replayed = []
    for step, n in enumerate([16, 16, 16, 5, 5, 16, 5]):
        X, Y = batch(n, step)
        dev = step % 2 == 0
        (lg, zg), (lr, zr) = fg(*(fg.to_device(a) for a in (X, Y))) if dev else fg(X, Y), fr(X, Y)
        lg, zg = (lg.cpu().numpy(), zg.cpu().numpy()) if dev else (lg, zg)
        np.testing.assert_allclose(lg, lr, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(zg, zr, rtol=1e-4, atol=1e-5)
        replayed.append(fg.stats()["replayed"])
    assert replayed == [False, True, True, False, True, True, True]
    assert fg.stats()["replay"] == "on" and fg.stats()["captures"] == 2
    for p, q in zip(pg, pr):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-4, atol=1e-5, err_msg=p.name)


def test_a_value_set_between_replays_is_used_and_reads_see_each_step():
    fg, pg = mlp("gpu")
    fr, pr = mlp("reference")
    X, Y = batch(8, 1)
    for _ in range(3):
        fg(X, Y), fr(X, Y)
        for p, q in zip(pg, pr):
            np.testing.assert_allclose(p.value, q.value, rtol=1e-4, atol=1e-5)
    assert fg.stats()["replayed"]
    new = np.full((6, 8), 0.05, np.float32)
    pg[0].value, pr[0].value = new, new
    np.testing.assert_allclose(fg(X, Y)[0], fr(X, Y)[0], rtol=1e-4)
    assert fg.stats()["replayed"]


def test_replayed_device_outputs_survive_the_next_call():
    fg, _ = mlp("gpu")
    X, Y = batch(8, 2)
    xs = [fg.to_device(a) for a in (X, Y)]
    fg(*xs)
    first = fg(*xs)[1]
    keep = first.clone()
    fg(*xs)
    assert fg.stats()["replayed"]
    torch.testing.assert_close(first, keep)


def test_two_replaying_functions_share_parameters():
    fg, pg = mlp("gpu")
    fr, pr = mlp("reference")
    x = ng.placeholder(("N", 6), name="x")
    ev = ng.compile([x], ng.relu(x @ pg[0] + pg[1]) @ pg[2], target="gpu")
    X, Y = batch(8, 3)
    for _ in range(4):
        fg(X, Y), fr(X, Y)
        want = np.maximum(X @ pr[0].value + pr[1].value, 0) @ pr[2].value
        np.testing.assert_allclose(ev(X), want, rtol=1e-4, atol=1e-5)


def test_replay_keeps_zero_dimensional_parameters():
    """A 0-d parameter (a step counter, a scalar scale) refilled into the graph's storage
    keeps its shape: np.ascontiguousarray would make it (1,) and the copy would fail."""
    x = ng.placeholder(("N", 3), name="x")
    t = ng.parameter(np.array(2.0, np.float32), name="t")
    f = ng.compile([x], (x * t).sum(), updates={t: t + 1.0}, target="gpu")
    X = np.arange(6, dtype=np.float32).reshape(2, 3)
    scale = 2.0
    for step in range(4):
        np.testing.assert_allclose(f(X), X.sum() * scale, rtol=1e-6)
        scale += 1.0
        if step == 1:
            t.value = np.array(10.0, np.float32)   # refilled from the host between replays
            scale = 10.0
    assert f.stats()["replayed"]
    np.testing.assert_allclose(t.value, scale)


def test_inputs_reused_at_the_same_addresses_are_read_in_place():
    """A caller that passes the same device tensors again gets a graph reading them in
    place (no copy): values written into those tensors between calls are seen."""
    fg, _ = mlp("gpu")
    fr, _ = mlp("reference")
    X, Y = batch(8, 4)
    xs = [fg.to_device(a) for a in (X, Y)]
    for step in range(5):
        xs[0].copy_(torch.from_numpy(X + step))      # the caller refills its batch tensor
        got, want = fg(*xs), fr(X + step, Y)
        np.testing.assert_allclose(got[0].cpu().numpy(), want[0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got[1].cpu().numpy(), want[1], rtol=1e-4, atol=1e-5)
    assert fg.stats()["replayed"]
    bd = next(iter(fg.runner._bindings.values()))
    assert any(v.in_place for v in bd.replay.variants)


def test_an_output_dropped_by_the_caller_is_reused_and_one_held_is_not():
    """Device outputs are aliases of the graph's output buffers: a buffer is written again
    only when the caller holds no tensor (not even a view) of the last output from it."""
    x = ng.placeholder(("N", 3), name="x")
    f = ng.compile([x], ng.exp(x) + 1.0, target="gpu")
    xt = f.to_device(np.zeros((2, 3), np.float32))
    for _ in range(3):                     # runs, captures a graph, then one reading xt in place
        f(xt)
    ptr = f(xt).data_ptr()                 # dropped at once
    assert f(xt).data_ptr() == ptr and f.stats()["replayed"]
    held = f(xt)
    view = f(xt)[0]                        # only a view of it is kept
    xt.fill_(1.0)
    third = f(xt)
    assert len({held.data_ptr(), view.data_ptr(), third.data_ptr()}) == 3
    np.testing.assert_allclose(held.cpu().numpy(), 2.0)
    np.testing.assert_allclose(view.cpu().numpy(), 2.0)
    np.testing.assert_allclose(third.cpu().numpy(), np.e + 1, rtol=1e-6)


def test_outputs_kept_beyond_the_graphs_variants_are_clones_that_stay_intact():
    fg, _ = mlp("gpu")
    fr, _ = mlp("reference")
    X, Y = batch(8, 5)
    xs = [fg.to_device(a) for a in (X, Y)]
    kept, want = [], []
    for _ in range(gpu_replay.MAX_VARIANTS + 4):     # losses.append(loss) in a training loop
        kept.append(fg(*xs)[0])
        want.append(fr(X, Y)[0])
    assert fg.stats()["replayed"]
    np.testing.assert_allclose([float(k) for k in kept], want, rtol=1e-4)


def test_calls_alternating_between_device_tensors_each_read_their_own_values():
    """Graphs that read inputs in place are keyed on the inputs' addresses: a call with
    another tensor of the same shape never reads the one a graph was captured with."""
    x = ng.placeholder(("N", 3), name="x")
    f = ng.compile([x], ng.exp(x) * 2.0, target="gpu")
    a = f.to_device(np.full((2, 3), 0.5, np.float32))
    b = f.to_device(np.full((2, 3), -1.0, np.float32))
    for t in [a, a, b, a, a, b, b, a, b, b, a]:
        np.testing.assert_allclose(f(t).cpu().numpy(), np.exp(t.cpu().numpy()) * 2.0, rtol=1e-6)
    assert f.stats()["replayed"]
    kinds = sorted(v.in_place for v in next(iter(f.runner._bindings.values())).replay.variants)
    assert kinds == [False, True, True]


def test_an_output_fed_back_as_the_next_input_is_copied_not_captured_in_place():
    """Reading a graph's own output in place (y = f(u) twice with u an output) would
    keep that output's buffer referenced for good, so its graph could never run again;
    such an input is copied in instead."""
    h = ng.placeholder(("N", 3), name="h")
    f = ng.compile([h], ng.tanh(h) * 0.5 + 0.25, target="gpu")
    t = f.to_device(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3))
    u = f(t)
    u = f(t)                   # replayed: u is a graph's output buffer
    for _ in range(4):
        v = f(u)
        np.testing.assert_allclose(v.cpu().numpy(), np.tanh(u.cpu().numpy()) * 0.5 + 0.25, rtol=1e-5)
    assert f.stats()["replayed"]
    replay = next(iter(f.runner._bindings.values())).replay
    del u, v                   # the caller holds no output any more: every graph may run again
    assert not any(v.in_place for v in replay.variants)
    assert all(v.free() for v in replay.variants)


def test_pipelined_steps_match_the_reference_and_held_outputs_stay_intact():
    """Calls back to back with no synchronise in between (a training loop on the GPU):
    the batch tensor refilled in place before each call, some outputs kept, others
    dropped. Every kept output and the parameters at the end are the reference's."""
    fg, pg = mlp("gpu")
    fr, pr = mlp("reference")
    X, Y = batch(8, 6)
    xs = [fg.to_device(a) for a in (X, Y)]
    batches = [fg.to_device(X * (1 + 0.1 * step)) for step in range(12)]   # on the device before the loop
    kept, want = [], []
    loss = None
    for step in range(12):
        xs[0].copy_(batches[step])        # a device-to-device copy, queued after the previous call
        loss, logits = fg(*xs)            # the last loss is held meanwhile
        lr, zr = fr(X * (1 + 0.1 * step), Y)
        if step % 3 == 0:
            kept.append((loss, logits))
            want.append((lr, zr))
    assert fg.stats()["replayed"]
    for (lg, zg), (lr, zr) in zip(kept, want):
        np.testing.assert_allclose(lg.cpu().numpy(), lr, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(zg.cpu().numpy(), zr, rtol=1e-4, atol=1e-5)
    for p, q in zip(pg, pr):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-4, atol=1e-5, err_msg=p.name)


def test_pipelined_outputs_fed_back_as_inputs_follow_the_recurrence():
    """h = f(h) ten times with no synchronise: each call reads the output of the one
    before, which the graphs must neither read in place nor overwrite early."""
    h = ng.placeholder(("N", 3), name="h")
    f = ng.compile([h], ng.tanh(h) * 0.9 + 0.1, target="gpu")
    start = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    t, want = f.to_device(start), start
    history = []
    for _ in range(10):
        t = f(t)
        want = np.tanh(want) * np.float32(0.9) + np.float32(0.1)
        history.append((t, want))
    assert f.stats()["replayed"]
    for got, w in history:
        np.testing.assert_allclose(got.cpu().numpy(), w, rtol=1e-5, atol=1e-6)
