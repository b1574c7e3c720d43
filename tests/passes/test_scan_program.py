"""The Program's loop construct (passes/loop.py): the Program interpreter runs a
ScanLoop step by step (forward and reverse, length 0 included), the memory plan
keeps what crosses steps alive over the whole loop while body temporaries share
slots within a step, and the loop prints in fn.dump("kernels")."""
from __future__ import annotations

import numpy as np
import pytest

from passes.memory import lifetimes, peak_bytes, positions
from passes.program import format_program, symbols
from passes.program_interpreter import run_program
from scan_programs import elman, elman_data


def _check(prog, oracle, length, n=3):
    inputs, params = elman_data(length, n)
    outs, _ = run_program(prog, inputs, params, {"T": length, "N": n})
    for got, want in zip(outs, oracle(*inputs, *params)):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("hoisted", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_interpreter_runs_the_loop_for_every_length_from_one_program(hoisted, reverse):
    prog, oracle = elman(hoisted=hoisted, reverse=reverse)
    for length in (0, 1, 7, 60):
        _check(prog, oracle, length)


def test_length_zero_returns_the_initial_carry_and_empty_stacks():
    prog, oracle = elman()
    inputs, params = elman_data(0)
    (ys, hT), _ = run_program(prog, inputs, params, {"T": 0, "N": 3})
    assert ys.shape == (0, 3, 5)
    np.testing.assert_array_equal(hT, inputs[1])


def test_what_crosses_steps_lives_over_the_whole_loop():
    prog, oracle = elman(closed=True)
    pos = positions(prog.schedule)
    loop_at = [p for k, p, _ in pos if k is prog.schedule[-1]]
    start, end = loop_at[0], loop_at[-1]
    live = lifetimes(prog)
    name = {b.name: b.id for b in prog.buffers.values()}
    # the closed-over temp is read inside the body at every step: alive to the loop's end
    assert live[name["b_again"]][0] < start and live[name["b_again"]][1] == end
    # the carry's new value crosses into the next step through the copy at the end
    assert live[name["h_next"]] == (start, end)
    # a body temporary lives from its writer to its reader within the step
    first, last = live[name["h_sq"]]
    assert start < first <= last < end
    for length in (1, 2, 9):      # a wrong plan shows as wrong values from step 2 on
        _check(prog, oracle, length)


def test_body_temporaries_share_slots_and_stacks_grow_with_length():
    prog, _ = elman(closed=True)
    slots = {prog.plan[b.id] for b in prog.buffers.values() if b.kind == "temp"}
    temps = [b for b in prog.buffers.values() if b.kind == "temp"]
    assert len(slots) < len(temps)      # h_Wh, x_Wx and h_sq are never live together
    hoisted, _ = elman(hoisted=True)
    small, big = (peak_bytes(hoisted, {"T": t, "N": 3}) for t in (10, 1000))
    assert big - small == 990 * 3 * 5 * 4   # the stacked projection: one [N, H] slice per step


def test_the_loop_prints_with_its_carries_slices_and_body():
    prog, _ = elman(hoisted=True, reverse=True)
    text = format_program(prog)
    assert "reverse loop over T steps" in text
    assert "carry @hT (from @h0) <- @h_next after each step" in text
    assert "step @xw_t = @xs_Wx[t]" in text
    assert "matmul @h_Wh[N,5] = 1.0 * @hT @ @Wh" in text
    assert "@xw_t: f32[N,5] step of @xs_Wx" in text
    assert symbols(prog) == ["N", "T"]
