"""Memory plan: temps share slots only when their lifetimes are disjoint, reuse
happens, sizes may be symbolic, and a wrong plan would show as a wrong result."""
from __future__ import annotations

import numpy as np
import pytest

import nngraph as ng
from nngraph.graph import Graph
from nngraph.interpreter import evaluate
from passes.lowering import to_program
from passes.memory import lifetimes, live_peak_bytes, nbytes, peak_bytes, plan_memory
from passes.program_interpreter import run_program


def _chain(level):
    x = ng.placeholder(("N", 16), name="x")
    h = x
    for k in range(8):
        h = ng.sum(ng.exp(h * 0.1), 1, keepdims=True) * h + float(k)
    g = Graph([x], [h])
    return g, to_program(g, level)


@pytest.mark.parametrize("level", [0, 2])
def test_no_two_live_temps_share_a_slot(level):
    _, prog = _chain(level)
    live = lifetimes(prog)
    for a, (fa, la) in live.items():
        for b, (fb, lb) in live.items():
            if a < b and prog.plan[a] == prog.plan[b]:
                assert la < fb or lb < fa, (prog.buffers[a].name, prog.buffers[b].name)
    assert set(prog.plan) == {b for b, buf in prog.buffers.items() if buf.kind == "temp"}


def test_reuse_happens_and_peak_scales_with_the_bound_size():
    _, prog = _chain(0)
    temps = [b for b, buf in prog.buffers.items() if buf.kind == "temp"]
    assert len(set(prog.plan.values())) < len(temps)  # slots are reused
    small, big = peak_bytes(prog, {"N": 4}), peak_bytes(prog, {"N": 400})
    assert big == 100 * small
    assert live_peak_bytes(prog, {"N": 4}) <= small
    naive = sum(nbytes(prog.buffers[b], {"N": 4}) for b in temps)
    assert small < naive


def test_the_interpreter_runs_temps_in_their_slots_so_a_bad_plan_gives_wrong_values():
    g, prog = _chain(0)
    xv = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    want = evaluate(g.outputs, {g.inputs[0]: xv}, {"N": 5})[0]
    got = run_program(prog, [xv], [], {"N": 5})[0][0]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # put every temp in one slot: the values must go wrong (the plan is really used)
    prog.plan = {b: 0 for b in prog.plan}
    bad = run_program(prog, [xv], [], {"N": 5})[0][0]
    assert not np.allclose(bad, want, rtol=1e-5, equal_nan=False)


def test_plan_is_deterministic_and_views_count_for_their_base():
    _, prog = _chain(2)
    assert plan_memory(prog) == prog.plan
    for b in prog.buffers:
        assert prog.root(b) == b  # no views in this program
    x = ng.placeholder((2, 3, 6, 6), name="x")
    w = ng.parameter(np.ones((4, 3, 3, 3), np.float32), name="w")
    prog = to_program(Graph([x], [ng.sum(ng.relu(ng.conv2d(x, w, padding=1)))]), 2)
    views = [b for b, buf in prog.buffers.items() if buf.kind == "view"]
    assert views and all(prog.buffers[prog.root(v)].kind != "view" for v in views)
