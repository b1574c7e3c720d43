"""Backpropagation through time, compiled: gradients of scan graphs against central
differences in float64 (the graph interpreter, the Program interpreter, LLVM) or,
on Triton's interpreter (hundreds of calls of many launches each would take
minutes), against the same gradients from the graph interpreter; all after the
loop passes moved the input projection before the loops and the weight-gradient
accumulations after them."""
from __future__ import annotations

import numpy as np
import pytest

import helpers
import nngraph as ng
from scan_models import elman_on, lstm_on


def _arrays(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) * 0.5 for s in shapes]


def _check(build, arrays, shapes, target):
    if target != "gpu":
        helpers.check_grad(build, arrays, target=target, shapes=shapes, rtol=1e-5, atol=1e-7)
        return
    phs = [ng.placeholder(s, "float64", name=f"in{i}") for i, s in enumerate(shapes)]
    cost = build(*phs)
    grads = ng.grad(cost, phs)
    want = helpers.compile(phs, [cost] + grads, target="oracle")(*arrays)
    for got, w in zip(helpers.compile(phs, [cost] + grads, target=target)(*arrays), want):
        np.testing.assert_allclose(np.asarray(got), w, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("reverse", [False, True])
def test_elman_bptt_matches_finite_differences(target, reverse):
    arrays = _arrays([(4, 2, 3), (2, 3), (3, 3), (3, 3), (3,)])
    _check(lambda *a: elman_on(*a, reverse=reverse), arrays, [("T", "N", 3), ("N", 3), (3, 3), (3, 3), (3,)],
           target)


def test_lstm_cell_bptt_matches_finite_differences(target):
    arrays = _arrays([(3, 2, 3), (2, 2), (2, 2), (3, 8), (2, 8), (8,)], seed=1)
    _check(lstm_on, arrays, [("T", "N", 3), ("N", 2), ("N", 2), (3, 8), (2, 8), (8,)], target)


def test_weight_gradients_are_summed_after_the_loop_in_one_product():
    xs = ng.placeholder(("T", "N", 3), "float64", name="xs")
    h0 = ng.placeholder(("N", 3), "float64", name="h0")
    Wx = ng.parameter(np.eye(3), name="Wx")
    Wh = ng.parameter(np.eye(3) * 0.5, name="Wh")
    b = ng.parameter(np.ones(3) * 0.1, name="b")
    loss = elman_on(xs, h0, Wx, Wh, b)
    grads = ng.grad(loss, [Wx, Wh, b, xs])
    fn = ng.compile([xs, h0], [loss] + grads, target="reference")
    sinks = [e["rewrites"] for e in fn.stats()["passes"] if e["pass"] == "sink_scans"][0]
    assert sinks["sink:accumulator"] == 3 and sinks["sink:ys"] >= 1     # gWx, gWh, gb; the input gradient
    backward = [lp for lp in fn.stats()["loops"] if lp["reverse"]]
    assert len(backward) == 1 and backward[0]["library_calls_per_step"] == 1   # only dh @ Whᵀ per step
    text = fn.dump("kernels")
    after = text.split("reverse loop over T steps")[1]
    assert after.count("(k=T*N)") == 2      # gWx = Xᵀ·dZ and gWh = Hᵀ·dZ: one GEMM each over all steps
    X = np.random.default_rng(0).standard_normal((5, 2, 3))
    want = helpers.compile([xs, h0], [loss] + grads, target="oracle")(X, np.ones((2, 3)))
    for got, w in zip(fn(X, np.ones((2, 3))), want):
        np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12)


def test_lstm_layer_weight_gradients_are_one_gemm_each_over_batch_and_time():
    """ng.nn.LSTM takes x [N, T, F] (batch first) and makes it time first once: the
    kernel's gradient sums x[t]ᵀ·dZ[t] over the steps, read transposed from that copy.
    That sum must fold into one GEMM of depth T*N (as the recurrent kernel's), not a
    batched product [T, F, 4H] summed afterwards (which held T times the weights in
    memory), nor a second, transposed copy of x."""
    x = ng.placeholder(("N", "T", 3), name="x")
    lstm = ng.nn.LSTM(4)
    lstm.ensure_built(x, np.random.default_rng(0))
    loss = ng.sum(lstm(x) ** 2)
    params = [lstm.params[n] for n in ("kernel", "recurrent_kernel", "bias")]
    grads = ng.grad(loss, params)
    fn = ng.compile([x], [loss] + grads, target="cpu")
    text = fn.dump("kernels")
    assert text.count("(k=T*N)") == 2
    assert ": f32[T,3,16]" not in text and ": f32[T,3,N]" not in text   # no batched product, no 2nd copy
    X = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    want = helpers.compile([x], [loss] + grads, target="oracle")(X)
    for got, w in zip(fn(X), want):
        np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-5)
