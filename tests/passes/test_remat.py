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


def test_a_copy_of_x_idle_across_the_loops_is_made_again_after_them(target):
    inputs, outputs, updates, params, grads = _elman_step(False)
    X = helpers.rand((2, 6, 3), 1, "float32")
    want = helpers.compile(inputs, outputs + grads, target="oracle")(X)
    before = [p.value.copy() for p in params]
    fn = helpers.compile(inputs, outputs, updates=updates, target=target)
    np.testing.assert_allclose(fn(X)[0], want[0], rtol=1e-5)
    for p, old, g in zip(params, before, want[1:]):
        np.testing.assert_allclose(p.value, old - 0.1 * g, rtol=1e-5, atol=1e-6, err_msg=p.name)
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
