"""Parameter updates that do not need a loop run before it (passes/loop_order.py):
the Dense head's update after an LSTM runs before the backward loop, so h[T-1] and
the logits' gradient do not live across that loop; the recurrent weights' updates,
which need it, stay after it. Values against the graph interpreter on every target."""
from __future__ import annotations

import numpy as np
import pytest

import helpers
import nngraph as ng
from passes.loop import ScanLoop
from passes.loop_order import updates_before_loops
from passes.program import LoopKernel, MatmulKernel, Stage, Store, instr
from scan_models import F, lstm_sgd_step


def _writers(prog) -> dict:
    """update buffer name -> position of the kernel that writes it."""
    return {prog.buffers[b].name: i for i, k in enumerate(prog.schedule) for b in k.writes()
            if prog.buffers[b].kind == "update"}


@pytest.mark.parametrize("batch_first", [True, False])
def test_the_head_is_updated_before_the_backward_loop(target, batch_first):
    loss, updates, inputs, params, grads = lstm_sgd_step(batch_first)
    x = helpers.rand((2, 6, F) if batch_first else (6, 2, F), 1, "float32")
    y = np.array([0, 2], np.int32)
    want = helpers.compile(inputs, [loss] + grads, target="oracle")(x, y)
    fn = helpers.compile(inputs, loss, updates=updates, target=target)
    before = [p.value.copy() for p in params]
    np.testing.assert_allclose(fn(x, y), want[0], rtol=1e-5)
    for p, old, g in zip(params, before, want[1:]):
        np.testing.assert_allclose(p.value, old - 0.1 * g, rtol=1e-5, atol=1e-6, err_msg=p.name)
    if target == "oracle":
        return
    prog = fn.runner.program
    loops = [i for i, k in enumerate(prog.schedule) if isinstance(k, ScanLoop)]
    backward = loops[1]
    at = _writers(prog)
    assert at["V_new"] < backward and at["c_new"] < backward
    recurrent = params[1].name + "_new"
    assert at[recurrent] > backward


def _kernel(name, reads, writes):
    """A pointwise kernel over [4]: every buffer of `writes` = the sum of `reads`."""
    body = [instr("idx", (), dtype="int64", axis=0)]
    for r in reads:
        body.append(instr("load", (0,), buffer=r))
    v = 1
    for i in range(2, len(body)):
        body.append(instr("add", (v, i)))
        v = len(body) - 1
    return LoopKernel(name, (4,), [Stage((), body, (), [Store(w, (0,), v) for w in writes])])


class _Buf:
    def __init__(self, kind):
        self.kind = kind


def test_an_update_moves_only_past_what_it_does_not_depend_on():
    # buffers: 0 param, 1 temp read only by the update, 2 temp the loop writes, 3 update, 4 temp
    buffers = {0: _Buf("param"), 1: _Buf("temp"), 2: _Buf("temp"), 3: _Buf("update"), 4: _Buf("temp")}
    make = _kernel("make", [0], [1])
    loop = ScanLoop("loop", 3, [_kernel("body", [0], [4])], slices=())
    needs_loop = _kernel("needs", [1, 4], [3])
    free = _kernel("free", [1, 0], [3])
    same = lambda b: b       # noqa: E731
    assert updates_before_loops([make, loop, needs_loop], buffers, same) == [make, loop, needs_loop]
    assert updates_before_loops([make, loop, free], buffers, same) == [make, free, loop]
    # nothing gained (the temp it reads is read after the loop anyway): left where it was
    after = _kernel("after", [1], [2])
    assert updates_before_loops([make, loop, free, after], buffers, same) == [make, loop, free, after]
    # a product is moved the same way
    gemm = MatmulKernel("gemm", 1, 0, 3, (), 2, 2, 2)
    assert updates_before_loops([make, loop, gemm], buffers, same) == [make, gemm, loop]
