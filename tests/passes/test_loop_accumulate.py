"""A loop step's product that adds a per-step input accumulates into that input's
slice (passes/loop_accumulate.py): an LSTM's h·W_hh (beta = 1) into the slice of the
input projection hoisted before the loop, so the step has no z buffer of its own;
never into a caller's array, nor into a slice that is read after the loop."""
from __future__ import annotations

import numpy as np
import helpers
import nngraph as ng
from passes.loop import all_loops
from passes.program import MatmulKernel
from scan_models import F, H, lstm

RNG = np.random.default_rng(5)


def _program(inputs, outputs):
    """The Program ng.compile makes (the passes, loop hoisting included, then lowering)."""
    return ng.compile(inputs, outputs, target="reference").runner.program


def _products(prog):
    """The products of the program's loop bodies."""
    return [k for loop in all_loops(prog.schedule) for k in loop.body if isinstance(k, MatmulKernel)]


def _stepped(prog, b) -> bool:
    return prog.buffers[b].kind == "step"


def _values_agree(inputs, outputs, target, arrays):
    want = helpers.compile(inputs, outputs, target="oracle")(*arrays)
    got = helpers.compile(inputs, outputs, target=target)(*arrays)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def _lstm_arrays(steps, n=3):
    return [RNG.standard_normal((steps, n, F)).astype(np.float32) * 0.5,
            RNG.standard_normal((n, H)).astype(np.float32) * 0.5, RNG.standard_normal((n, H)).astype(np.float32) * 0.5]


def test_the_lstm_step_adds_its_product_into_the_input_projection(target):
    xs, (h0, c0), _, ((hT, cT), hs) = lstm()
    prog = _program([xs, h0, c0], [hT, cT, hs])
    (k,) = _products(prog)
    assert k.beta == 1.0 and _stepped(prog, k.out) and k.epilogue is not None      # + b stays in the epilogue
    (loop,) = list(all_loops(prog.schedule))
    body_temps = {b for kern in loop.body for b in kern.reads() | kern.writes() if prog.buffers[b].kind == "temp"}
    assert not [prog.buffers[b].name for b in body_temps if prog.buffers[b].shape[-1] == 4 * H]   # no z
    for steps in (0, 1, 5):
        _values_agree([xs, h0, c0], [hT, cT, hs], target, _lstm_arrays(steps))


def test_the_layer_step_is_the_product_alone():
    """ng.nn.LSTM adds its bias in the projection before the loop: the step's product
    has nothing left to do after BLAS's C = A·B + C."""
    x = ng.placeholder(("N", "T", F), name="x")
    y = ng.nn.LSTM(H, return_sequences=True, seed=1)(x)
    (k,) = _products(_program([x], [y]))
    assert k.beta == 1.0 and k.epilogue is None


def test_no_accumulation_into_a_projection_read_after_the_loop(target):
    xs, (h0, c0), p, ((hT, cT), hs) = lstm()
    projection = ng.matmul(xs, p["Wx"])           # the same value as the hoisted one, returned
    prog = _program([xs, h0, c0], [hT, hs, projection])
    (k,) = _products(prog)
    (loop,) = list(all_loops(prog.schedule))
    loads = {i.attr("buffer") for i in k.epilogue.body if i.op == "load"}
    stacked = {s.stacked for s in loop.slices if s.step in loads}
    after = prog.schedule[prog.schedule.index(loop) + 1:]
    assert stacked & (set(prog.outputs) | {b for kern in after for b in kern.reads()})   # read after the loop
    assert k.beta == 0.0 and not _stepped(prog, k.out)
    _values_agree([xs, h0, c0], [hT, hs, projection], target, _lstm_arrays(4))


def test_no_accumulation_into_the_callers_array(target):
    """A per-step input that is an input of the call is the caller's array: the step's
    product must not write into it."""
    zs = ng.placeholder(("T", "N", 2 * H), name="zs")
    h0 = ng.placeholder(("N", H), name="h0")
    wh = ng.constant(RNG.standard_normal((H, 2 * H)).astype(np.float32) * 0.3)

    def step(h, z_t):
        z = z_t + ng.matmul(h, wh)
        new = ng.tanh(z[:, :H]) * ng.sigmoid(z[:, H:])
        return new, new
    hT, ys = ng.scan(step, h0, zs)
    prog = _program([zs, h0], [hT, ys])
    (k,) = _products(prog)
    assert k.beta == 0.0
    Z = RNG.standard_normal((4, 3, 2 * H)).astype(np.float32)
    H0 = RNG.standard_normal((3, H)).astype(np.float32)
    before = Z.copy()
    _values_agree([zs, h0], [hT, ys], target, [Z, H0])
    np.testing.assert_array_equal(Z, before)


def test_a_step_with_a_nested_scan_after_the_product(target):
    """The kernels after the product that do not use z (here a nested scan over h) are
    left as they are; the outer product still accumulates into its slice."""
    zin = ng.placeholder(("T", "N", 2 * H), name="zin")
    h0 = ng.placeholder(("N", H), name="h0")
    wh = ng.constant(RNG.standard_normal((H, 2 * H)).astype(np.float32) * 0.3)

    def step(h, z_t):
        z = z_t + ng.matmul(h, wh)
        inner, _ = ng.scan(lambda c, v: (ng.tanh(c * 0.5 + v), None), ng.constant(np.zeros(H, np.float32)), h)
        new = ng.tanh(z[:, :H]) * ng.sigmoid(z[:, H:]) + inner
        return new, new

    hT, ys = ng.scan(step, h0, zin * 1.5)
    prog = _program([zin, h0], [hT, ys])
    assert any(k.beta == 1.0 and _stepped(prog, k.out) for k in _products(prog))
    for steps in (0, 1, 4):
        arrays = [RNG.standard_normal((steps, 2, 2 * H)).astype(np.float32), RNG.standard_normal((2, H)).astype(np.float32)]
        _values_agree([zin, h0], [hT, ys], target, arrays)
