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


def _copy_kernel(name, dst, srcs, shape):
    """dst[i, j] = sum of srcs[k][i, j] (a small source, shape (1, 4), read at [0, j % 4])."""
    from passes.program import LoopKernel, Stage, Store, instr
    body = [instr("idx", (), dtype="int64", axis=0), instr("idx", (), dtype="int64", axis=1)]
    acc = None
    for buf, small in srcs:
        if small:
            body.append(instr("const", (), dtype="int64", value=4))
            body.append(instr("mod", (1, len(body) - 1), dtype="int64"))
            body.append(instr("const", (), dtype="int64", value=0))
            body.append(instr("load", (len(body) - 1, len(body) - 2), dtype="float32", buffer=buf))
        else:
            body.append(instr("load", (0, 1), dtype="float32", buffer=buf))
        if acc is not None:
            body.append(instr("add", (acc, len(body) - 1), dtype="float32"))
        acc = len(body) - 1
    return LoopKernel(name, shape, [Stage((), body, (), [Store(dst, (0, 1), acc)])])


def test_a_small_temp_does_not_keep_a_big_one_from_reusing_a_dead_big_slot():
    """k0 writes big A, k1 reads it last; k2 writes a small s, k3 a big B, k4 reads
    both. Placed by first use, s took A's freed slot and B needed a second big slot;
    placed largest first, B reuses A's slot and s gets a small one (the LSTM step's
    [T, N, 4H] projection and gate gradient: 6.5 MiB at T=50 N=32 H=256)."""
    from nngraph.types import Dim
    from passes.program import Buffer, Program
    T = Dim("T")
    spec = [("x", (T, 64), "input"), ("A", (T, 64), "temp"), ("o1", (T, 64), "output"),
            ("s", (1, 4), "temp"), ("B", (T, 64), "temp"), ("o2", (T, 64), "output")]
    bufs = {i: Buffer(i, n, "float32", shape, kind) for i, (n, shape, kind) in enumerate(spec)}
    x, A, o1, s, B, o2 = range(6)
    sched = [_copy_kernel("a", A, [(x, False)], (T, 64)), _copy_kernel("o1", o1, [(A, False)], (T, 64)),
             _copy_kernel("s", s, [(x, False)], (1, 4)), _copy_kernel("b", B, [(x, False)], (T, 64)),
             _copy_kernel("o2", o2, [(B, False), (s, True)], (T, 64))]
    prog = Program(bufs, sched, [x], [], [o1, o2], [])
    prog.plan = plan_memory(prog)
    assert prog.plan[A] == prog.plan[B] != prog.plan[s]
    assert peak_bytes(prog, {"T": 100}) == (100 * 64 + 4) * 4
    xv = np.random.default_rng(2).standard_normal((7, 64)).astype(np.float32)
    got = run_program(prog, [xv], [], {"T": 7})[0]
    np.testing.assert_array_equal(got[0], xv)
    np.testing.assert_allclose(got[1], xv + np.tile(xv[0, :4], 16), rtol=1e-6)


def test_a_static_temp_goes_to_the_dead_slot_that_grows_least():
    """k0 writes a narrow c [T, 4], k1 a wide A [T, 64], k2 reads both; then k3 writes
    a static W [64, 64] that k4 reads. Both dead slots are free for W, neither provably
    holds it (T * 256 bytes against 16 KiB); A's is provably at least c's at every call
    (passes/memory_order.py), so W grows it least: an LSTM's [H, 4H] weight gradients
    over the dead [T, N, H] stacks rather than the slots of [N, H] carries."""
    from nngraph.types import Dim
    from passes.program import Buffer, Program
    T = Dim("T")
    spec = [("x", (T, 64), "input"), ("c", (T, 4), "temp"), ("A", (T, 64), "temp"), ("o1", (T, 64), "output"),
            ("W", (64, 64), "temp"), ("o2", (64, 64), "output")]
    bufs = {i: Buffer(i, n, "float32", shape, kind) for i, (n, shape, kind) in enumerate(spec)}
    x, c, A, o1, W, o2 = range(6)
    sched = [_copy_kernel("c", c, [(x, False)], (T, 4)), _copy_kernel("a", A, [(x, False)], (T, 64)),
             _copy_kernel("o1", o1, [(A, False), (c, True)], (T, 64)), _copy_kernel("w", W, [(x, False)], (64, 64)),
             _copy_kernel("o2", o2, [(W, False)], (64, 64))]
    prog = Program(bufs, sched, [x], [], [o1, o2], [])
    prog.plan = plan_memory(prog)
    assert prog.plan[W] == prog.plan[A] != prog.plan[c]
    assert peak_bytes(prog, {"T": 100}) == (100 * 64 + 100 * 4) * 4     # (was 100 * 64 * 4 + 16 KiB)
    xv = np.random.default_rng(3).standard_normal((70, 64)).astype(np.float32)
    got = run_program(prog, [xv], [], {"T": 70})[0]
    np.testing.assert_allclose(got[0], xv + np.tile(xv[0, :4], 16), rtol=1e-6)
    np.testing.assert_array_equal(got[1], xv[:64])


def test_the_size_proofs_hold_for_every_binding_of_sizes_at_least_one():
    from itertools import product
    from nngraph.types import Dim
    from passes.memory_order import at_least, signature, size_key, slot_dominates
    from passes.program import Buffer
    T, N = Dim("T"), Dim("N")
    shapes = [(T, N, 256), (N, 256), (T, N, 64), (256, 1024), (N, 10), (T, T), (T,), (4,), (N, T, 2)]
    sigs = [signature(Buffer(i, "b", "float32", s, "temp")) for i, s in enumerate(shapes)]
    bytes_at = lambda shape, env: 4 * int(np.prod([env[d.name] if isinstance(d, Dim) else d for d in shape]))  # noqa: E731
    envs = [{"T": t, "N": n} for t, n in product((1, 2, 3, 50, 4096), (1, 7, 64))]
    for (sa, a), (sb, b) in product(zip(sigs, shapes), repeat=2):
        if at_least(sa, sb):
            assert all(bytes_at(a, e) >= bytes_at(b, e) for e in envs), (a, b)
            assert size_key(sa) >= size_key(sb)
    assert at_least(sigs[0], sigs[1]) and not at_least(sigs[1], sigs[0])
    assert not at_least(sigs[0], sigs[3]) and not at_least(sigs[3], sigs[0])    # T * N against 1024
    assert at_least(sigs[8], sigs[6]) and not at_least(sigs[5], sigs[8])
    assert slot_dominates({sigs[0], sigs[4]}, {sigs[1], sigs[2]}) and not slot_dominates({sigs[1]}, {sigs[3]})
