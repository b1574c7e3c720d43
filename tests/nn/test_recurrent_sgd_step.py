"""The SGD step of an LSTM (ng.nn.LSTM on batch-first x, and the cell inside ng.scan on
time-first x): each weight's update W - lr * Xᵀ·dZ is the epilogue of the one GEMM
over all steps that computes its gradient (passes/fusion.py's `summed_over_batch`),
so no weight gradient is ever stored. What is left in the work buffer is the stored
state of the backward pass, T·N·5H floats, plus two [N, H] carries and the head's
[N, C] gradient and [N] loss; the updated
weights agree with the graph interpreter on every target; and a call that fails after
those GEMMs wrote the new values leaves every weight as it was."""
import numpy as np
import pytest

import nngraph as ng

import helpers
from scan_models import F, H
from scan_models import lstm_sgd_step as _step

N, CLASSES = 2, 3


def _data(batch_first: bool, steps: int, n: int = N):
    shape = (n, steps, F) if batch_first else (steps, n, F)
    return helpers.rand(shape, steps, "float32"), np.arange(n, dtype=np.int32) % CLASSES


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_sgd_step_updates_every_weight_as_the_oracle(target, batch_first):
    loss, updates, inputs, params, grads = _step(batch_first)
    X, Y = _data(batch_first, 7)
    want = helpers.compile(inputs, [loss] + grads, target="oracle")(X, Y)
    before = [p.value.copy() for p in params]
    fn = helpers.compile(inputs, loss, updates=updates, target=target)
    np.testing.assert_allclose(fn(X, Y), want[0], rtol=1e-5)
    for p, old, g in zip(params, before, want[1:]):
        np.testing.assert_allclose(p.value, old - 0.1 * g, rtol=1e-5, atol=1e-6, err_msg=p.name)


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_sgd_step_stores_no_weight_gradient(batch_first):
    """Both LSTM weights' updates are stored by their GEMM over T*N rows (no temp of a
    weight's shape): before, both weight gradients were temps too, (F + H)·4H floats
    more; and the layer kept its time-first copy of x, T·N·F floats, alive across both
    loops (now made again after them, over h's dead stack: passes/remat.py)."""
    loss, updates, inputs, params, _ = _step(batch_first)
    fn = ng.compile(inputs, loss, updates=updates, target="reference")
    prog = fn.runner.program
    weights = {tuple(p.value.shape) for p in params[:2]}
    assert not [b.name for b in prog.buffers.values() if b.kind == "temp" and tuple(b.shape) in weights]
    folded = [line for line in fn.dump("kernels").splitlines() if "(k=T*N)" in line]
    assert len(folded) == 2 and all(f"@{p.name}_new[" in " ".join(folded) for p in params[:2])


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("steps, n", [(7, 2), (20, 2), (27, 3), (10, 4)])
def test_lstm_sgd_step_work_buffer_is_the_stored_state_and_two_carries(batch_first, steps, n):
    """The work buffer (fn.stats()["peak_bytes"]) of the whole step, exactly:
    - the stored state, T·N·5H floats: the [T, N, 4H] stack (input projection, into
      which each forward step's product adds h·W_hh (passes/loop_accumulate.py), then
      the gates over it, then their gradient over those) and the [T, N, H] stack
      (c[t-1], then h[t] over it, then h[t-1] shifted over that; the layer's
      time-first copies of x fit in its slot before and after, F <= H);
    - two [N, H] carries: (h, c) forward, (dh, dc) backward, each new value written
      over the old one and each initial value made in the carry's own memory
      (passes/memory_carries.py): no next-value buffers, no [N, 4H] z;
    - the logits' gradient [N, C] and the per-example loss [N], both made while
      h[T-1] and the logits are alive, before the backward loop (the Dense
      layer's update runs there, passes/loop_order.py, so h[T-1] is not kept
      across the loop).
    Before: 10·N·H floats of working set besides the stored state (a z [N, 4H], the
    carries' next values and initial values, h[T-1] across the backward loop)."""
    loss, updates, inputs, _, _ = _step(batch_first)
    fn = ng.compile(inputs, loss, updates=updates, target="reference")
    fn(*_data(batch_first, steps, n))
    stored, carries, head = steps * n * 5 * H, 2 * n * H, n * CLASSES + n
    assert fn.stats()["peak_bytes"] == 4 * (stored + carries + head)


@pytest.mark.parametrize("batch_first", [True, False])
def test_a_failure_after_a_weight_gemm_leaves_every_weight_unchanged(target, batch_first):
    """check_numerics raises at the update written last (an infinite learning rate for
    that parameter), after a GEMM wrote an LSTM weight's new value into its update
    buffer: nothing is committed, and the next call updates every weight."""
    if target == "oracle":
        pytest.skip("check_numerics is ng.compile's; the oracle runs the graph as built")
    rates = [ng.placeholder((), name=f"lr{i}") for i in range(5)]
    loss, updates, (x, y), params, _ = _step(batch_first, rates)
    fn = helpers.compile([x, y] + rates, loss, updates=updates, target=target, check_numerics=True)
    prog = fn.runner.program
    writer = {b: k for k, kern in enumerate(prog.schedule) for b in kern.writes()}
    new = [writer[u] for _, u in prog.updates]
    last = new.index(max(new))
    assert max(new) > min(new[:2])        # a weight's GEMM ran before the failing kernel
    X, Y = _data(batch_first, 5)
    before = [p.value.copy() for p in params]
    lrs = [np.float32(np.inf if i == last else 0.1) for i in range(5)]
    with pytest.raises(ng.NumericsError, match="no update was applied"):
        fn(X, Y, *lrs)
    for p, old in zip(params, before):
        np.testing.assert_array_equal(p.value, old, err_msg=p.name)
    fn(X, Y, *[np.float32(0.1)] * 5)
    assert all(not np.array_equal(p.value, old) for p, old in zip(params, before))
