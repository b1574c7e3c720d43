"""passes/remat.py: a copy of the inputs read before a loop and again after it is made
again for the readers after the loop, which move to the end of the call; only when
those readers write nothing but parameter updates."""
import numpy as np
import pytest

import nngraph as ng

import helpers


def _elman_step(also_return_gradient: bool):
    """An Elman RNN over batch-first x (made time first for ng.scan), SGD on Wx; the
    gradient of Wx also returned when asked."""
    rng = np.random.default_rng(0)
    x = ng.placeholder(("N", "T", 3), name="x")
    Wx = ng.parameter((rng.standard_normal((3, 4)) * 0.5).astype(np.float32), name="Wx")
    Wh = ng.parameter((rng.standard_normal((4, 4)) * 0.5).astype(np.float32), name="Wh")
    h0 = ng.broadcast_to(ng.constant(np.zeros((1, 4), np.float32)), (x.shape[0], 4))
    hT, _ = ng.scan(lambda h, x_t: (ng.tanh(x_t @ Wx + h @ Wh), None), h0, ng.transpose(x, (1, 0, 2)))
    loss = ng.sum(hT * hT)
    gWx, gWh = ng.grad(loss, [Wx, Wh])
    outputs = [loss, gWx] if also_return_gradient else [loss]
    return [x], outputs, {Wx: Wx - 0.1 * gWx, Wh: Wh - 0.1 * gWh}, [Wx, Wh], [gWx, gWh]


def _heads(fn):
    return [line for line in fn.dump("kernels").splitlines() if line.startswith("kernel")]


def _checked_step(target):
    """The Elman SGD step compiled for `target`, one call's loss and updates checked
    against the graph interpreter."""
    inputs, outputs, updates, params, grads = _elman_step(False)
    X = helpers.rand((2, 6, 3), 1, "float32")
    want = helpers.compile(inputs, outputs + grads, target="oracle")(X)
    before = [p.value.copy() for p in params]
    fn = helpers.compile(inputs, outputs, updates=updates, target=target)
    np.testing.assert_allclose(fn(X)[0], want[0], rtol=1e-5)
    for p, old, g in zip(params, before, want[1:]):
        np.testing.assert_allclose(p.value, old - 0.1 * g, rtol=1e-5, atol=1e-6, err_msg=p.name)
    return fn


def test_a_copy_of_x_idle_across_the_loops_is_made_again_after_them(target):
    fn = _checked_step(target)
    if target != "oracle":
        heads = _heads(fn)
        copies = [h for h in heads if " over [T,N,3]" in h]
        assert len(copies) == 2 and heads[-2] == copies[1]        # the second copy, then its reader
        assert "@Wx_new[" in heads[-1] and "_again" in heads[-1]


def test_no_second_copy_when_a_late_reader_writes_what_the_caller_gets():
    """The gradient returned too: its GEMM writes an output, so it stays where it is,
    and so does the one copy."""
    inputs, outputs, updates, _, _ = _elman_step(True)
    fn = ng.compile(inputs, outputs, updates=updates, target="reference")
    assert len([h for h in _heads(fn) if " over [T,N,3]" in h]) == 1 and "_again" not in fn.dump("kernels")


class _Kernel:
    """What remat asks of a kernel: the buffers it reads and writes."""
    def __init__(self, reads, writes):
        self._reads, self._writes = set(reads), set(writes)

    def reads(self):
        return self._reads

    def writes(self):
        return self._writes


def _loop(reads, writes):
    from passes.loop import ScanLoop
    loop = object.__new__(ScanLoop)
    loop.reads, loop.writes = (lambda: set(reads)), (lambda: set(writes))
    return loop


@pytest.mark.parametrize("through_view", [False, True])
def test_a_late_reader_that_reads_the_copy_through_a_view_gets_no_second_copy(through_view):
    """The readers are found through views (by root), but a second copy swaps only the
    buffer itself: a late reader of a view would go on reading the first copy, so none
    is made (before, that reader moved and kept the first copy alive to the end)."""
    from types import SimpleNamespace as Buf

    from passes import remat
    x, copy, view, stack, w_new = "x", "copy", "copy_view", "stack", "w_new"
    buffers = {x: Buf(kind="input"), copy: Buf(kind="temp"), view: Buf(kind="temp"), stack: Buf(kind="temp"),
               w_new: Buf(kind="update")}
    root = lambda b: copy if b == view else b      # noqa: E731
    late_reader = _Kernel([view if through_view else copy, stack], [w_new])
    schedule = [_Kernel([x], [copy]), _Kernel([copy], [stack]), _loop([stack], [stack]), late_reader]
    late = remat._late_readers(schedule, 0, copy, buffers, root)
    assert late == ([] if through_view else [late_reader])


def _arena(*shapes):
    """A Program-like object with one temp per shape, each in a slot of its own."""
    from types import SimpleNamespace as NS

    from nngraph.types import Dim
    dims = {"N": Dim("N"), "T": Dim("T")}
    bufs = {i: NS(id=i, kind="temp", dtype="float32", shape=tuple(dims.get(d, d) for d in s))
            for i, s in enumerate(shapes)}
    return NS(buffers=bufs, plan={i: i for i in bufs})


def test_a_second_copy_is_kept_only_when_the_peak_drops():
    from passes.remat import lowers_peak
    assert lowers_peak(_arena(("T", "N", 4)), _arena(("T", "N", 4), ("T", "N", 3)))
    assert not lowers_peak(_arena(("T", "N", 4)), _arena(("T", "N", 4)))                 # the same: not worth a copy
    assert not lowers_peak(_arena(("T", "N", 8)), _arena(("T", "N", 4), (4, 4)))        # higher at large sizes
    assert not lowers_peak(_arena(("T", "N", 1), (64,)), _arena(("T", "N", 2)))         # higher at small sizes


def test_a_schedule_whose_peak_the_second_copy_would_raise_keeps_one_copy(target, monkeypatch, tmp_path):
    """Where the plan with the second copy is not lower (forced here), the call keeps
    one copy, and the second copy's buffer is taken back; the values are unchanged."""
    from passes.lower import assemble
    seen = []
    monkeypatch.setattr(assemble, "lowers_peak", lambda new, old: seen.append((new, old)) or False)
    # a compile cache of its own, whose key cannot see the patch: no hit (the lowering
    # runs), and no entry left for other compiles of this graph
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    fn = _checked_step(target)
    if target != "oracle":
        assert seen and "_again" not in fn.dump("kernels")
        assert len([h for h in _heads(fn) if " over [T,N,3]" in h]) == 1
        new, old = seen[-1]
        assert any(b.name.endswith("_again") for b in new.buffers.values())
        assert not any(b.name.endswith("_again") for b in old.buffers.values())
