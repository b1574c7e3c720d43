"""A scan whose steps are independent across the rows of its carries runs by row
ranges on the CPU, one range of all steps per thread (passes/loop_rows.py decides,
codegen/llvm/loop_rows.py emits): which loops qualify (recurrent layers forward and
backward; not a body that mixes rows, reads a row buffer at another row, multiplies
by a row buffer on the right, or shares memory between row buffers of different
widths), and the values with the split forced on small sizes (ranges of unequal
length, one row, length 0) against NumPy, the per-step loop and the reference
target."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import nngraph as ng
from passes.loop import ScanLoop
from passes.loop_rows import independent_rows
from passes.program import LoopKernel, MatmulKernel, Stage, Store, instr
from scan_programs import N, elman, elman_data


def _loop(prog) -> ScanLoop:
    return next(k for k in prog.schedule if isinstance(k, ScanLoop))


@pytest.fixture
def split_rows(monkeypatch):
    """Every loop that qualifies is split across two threads, whatever its size and
    this machine's CPU count."""
    import codegen.llvm.entry as entry
    import codegen.llvm.loop_rows as loop_rows
    from codegen.llvm import blas
    monkeypatch.setattr(loop_rows, "ROW_BLASES", (blas.chosen_blas(),))
    monkeypatch.setattr(entry, "THREAD_WORK", 1)
    monkeypatch.setattr(entry, "N_THREADS", 2)
    monkeypatch.setattr(entry, "ROW_LOOPS", True)


@pytest.mark.parametrize("hoisted,reverse,closed", [(False, False, False), (True, True, True)])
def test_an_elman_loop_has_independent_rows(hoisted, reverse, closed):
    prog, _ = elman(hoisted=hoisted, reverse=reverse, closed=closed)
    assert independent_rows(prog, _loop(prog)) == N


def _with_body_kernel(prog, kern, new_buffers=()):
    """prog with `kern` appended to its loop's body (and `new_buffers` added)."""
    for buf in new_buffers:
        prog.buffers[buf.id] = buf
    loop = _loop(prog)
    loop.body.append(kern)
    return prog


def _new_temp(prog, name, shape):
    from passes.program import Buffer
    i = max(prog.buffers) + 1
    return Buffer(i, name, "float32", tuple(shape), "temp")


def _h_buffers(prog):
    loop = _loop(prog)
    return loop.carries[0].state, loop.carries[0].next


def test_a_body_that_sums_over_the_rows_is_not_split():
    prog, _ = elman()
    h, _ = _h_buffers(prog)
    H = prog.buffers[h].shape[1]
    total = _new_temp(prog, "h_over_rows", (H,))
    body = [instr("idx", dtype="int64", axis=0), instr("idx", dtype="int64", axis=1),
            instr("load", (1, 0), buffer=h)]
    stage = Stage((N,), body, (("sum", 2),), [Store(total.id, (0,), 2)])
    _with_body_kernel(prog, LoopKernel("k_sum_rows", (H,), [stage]), [total])
    assert independent_rows(prog, _loop(prog)) is None


def test_a_body_that_reads_another_row_of_the_carry_is_not_split():
    prog, _ = elman()
    h, _ = _h_buffers(prog)
    H = prog.buffers[h].shape[1]
    first = _new_temp(prog, "row0", (N, H))
    body = [instr("idx", dtype="int64", axis=0), instr("idx", dtype="int64", axis=1),
            instr("const", dtype="int64", value=0), instr("load", (2, 1), buffer=h)]
    kern = LoopKernel("k_row0", (N, H), [Stage((), body, (), [Store(first.id, (0, 1), 3)])])
    _with_body_kernel(prog, kern, [first])
    assert independent_rows(prog, _loop(prog)) is None
    # the same kernel reading its own row is fine
    body[3] = instr("load", (0, 1), buffer=h)
    assert independent_rows(prog, _loop(prog)) == N


def test_a_product_with_a_row_buffer_on_the_right_is_not_split():
    prog, _ = elman()
    h, _ = _h_buffers(prog)
    H = prog.buffers[h].shape[1]
    gram = _new_temp(prog, "gram", (N, N))
    _with_body_kernel(prog, MatmulKernel("k_gram", h, h, gram.id, (), N, N, H, trans_b=True), [gram])
    assert independent_rows(prog, _loop(prog)) is None


def test_row_buffers_sharing_memory_must_have_one_row_width():
    prog, _ = elman()
    h, h_next = _h_buffers(prog)
    H = prog.buffers[h].shape[1]
    wide = _new_temp(prog, "wide", (N, 2 * H))
    body = [instr("idx", dtype="int64", axis=0), instr("idx", dtype="int64", axis=1),
            instr("const", dtype="int64", value=H), instr("mod", (1, 2), dtype="int64"),
            instr("load", (0, 3), buffer=h_next)]
    kern = LoopKernel("k_wide", (N, 2 * H), [Stage((), body, (), [Store(wide.id, (0, 1), 4)])])
    _with_body_kernel(prog, kern, [wide])
    rec = next(k.out for k in _loop(prog).body if isinstance(k, MatmulKernel) and k.name == "k_h_Wh")
    prog.plan = dict(prog.plan)
    prog.plan[wide.id] = max(prog.plan.values()) + 1
    assert independent_rows(prog, _loop(prog)) == N
    prog.plan[wide.id] = prog.plan[rec]          # row r of one is not row r of the other
    assert independent_rows(prog, _loop(prog)) is None


def test_a_carry_of_one_row_is_not_split():
    prog, _ = elman()
    loop = _loop(prog)
    h = loop.carries[0].state
    prog.buffers[h] = dataclasses.replace(prog.buffers[h], shape=(1,) + tuple(prog.buffers[h].shape[1:]))
    assert independent_rows(prog, loop) is None


def _run_cpu(prog, lengths, n):
    from runtime.cpu import build_program
    runner, _ = build_program(prog)
    out = []
    for length in lengths:
        inputs, params = elman_data(length, n=n, seed=length)
        outs, _ = runner.run(inputs, params, {"T": length, "N": n})
        out.append((inputs, params, [np.array(o) for o in outs]))
    return runner, out


@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("hoisted,reverse,closed", [(False, False, False), (True, True, True)])
def test_a_loop_split_by_rows_matches_the_oracle(split_rows, n, hoisted, reverse, closed):
    prog, oracle = elman(hoisted=hoisted, reverse=reverse, closed=closed)
    runner, results = _run_cpu(prog, (0, 1, 7, 300), n)
    assert "_claim" in runner.compiled.ir_text                 # the loop runs by row ranges
    assert "_k_scan_t_head" not in runner.compiled.ir_text   # not step by step
    for inputs, params, outs in results:
        for got, want in zip(outs, oracle(*inputs, *params)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5, err_msg=f"T={len(inputs[0])} N={n}")


def test_the_per_step_loop_split_per_step_still_matches_the_oracle(split_rows, monkeypatch):
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "ROW_LOOPS", False)     # NNGRAPH_LOOP_ROWS=0
    prog, oracle = elman(hoisted=True, reverse=True, closed=True)
    runner, results = _run_cpu(prog, (0, 1, 7), 5)
    assert "_claim" not in runner.compiled.ir_text and "_k_scan_t_head" in runner.compiled.ir_text
    for inputs, params, outs in results:
        for got, want in zip(outs, oracle(*inputs, *params)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def test_step_weights_beyond_the_last_level_cache_keep_the_per_step_loop(split_rows, monkeypatch):
    """Each thread would read all the step's weights every step: from memory that
    doubles a weight-streaming product's traffic, so such a loop stays per step."""
    import codegen.llvm.loop_rows as loop_rows
    from codegen.host import host_facts
    from runtime.cpu import build_program
    prog, _ = elman()
    weights = (4 * 5 + 5 * 5) * 4                 # Wx [F, H] and Wh [H, H], float32: the step's products
    for l3, by_rows in ((weights, True), (weights - 1, False)):
        facts = dataclasses.replace(host_facts(), l3=l3)
        monkeypatch.setattr(loop_rows, "host_facts", lambda: facts)
        runner, _ = build_program(prog)
        assert ("_claim" in runner.compiled.ir_text) == by_rows


def test_a_blas_slow_on_few_rows_keeps_the_per_step_loop(split_rows, monkeypatch):
    import codegen.llvm.loop_rows as loop_rows
    from runtime.cpu import build_program
    monkeypatch.setattr(loop_rows, "ROW_BLASES", ())
    runner, _ = build_program(elman()[0])
    assert "_claim" not in runner.compiled.ir_text and "_k_scan_t_head" in runner.compiled.ir_text


def test_the_per_step_loop_remains_when_rows_are_not_independent(split_rows):
    prog, _ = elman()
    h, _ = _h_buffers(prog)
    gram = _new_temp(prog, "gram", (N, N))
    _with_body_kernel(prog, MatmulKernel("k_gram", h, h, gram.id, (), N, N, prog.buffers[h].shape[1],
                                         trans_b=True), [gram])
    from runtime.cpu import build_program
    runner, _ = build_program(prog)
    assert "_claim" not in runner.compiled.ir_text and "_k_scan_t_head" in runner.compiled.ir_text


def _layer_step(kind, target, X, U):
    """y and the gradients of sum(y * U) for x and every weight of a `kind` layer."""
    layer = getattr(ng.nn, kind)(6, return_sequences=True, seed=3)
    x = ng.placeholder(("N", "T", X.shape[2]), name="x")
    y = layer(x)
    rng = np.random.default_rng(4)
    for p in layer.params.values():
        p.value = rng.uniform(-0.6, 0.6, p.value.shape).astype(np.float32)
    u = ng.placeholder(y.shape, name="u")
    grads = ng.grad(ng.sum(y * u), [x] + [layer.params[k] for k in sorted(layer.params)])
    fn = ng.compile([x, u], [y] + grads, target=target)
    return fn, fn(X, U)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_layers_split_by_rows_match_the_reference(split_rows, kind):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((5, 7, 4)).astype(np.float32)       # 5 rows: ranges of 2 and 3
    U = rng.standard_normal((5, 7, 6)).astype(np.float32)
    fn, got = _layer_step(kind, "cpu", X, U)
    ir = fn.dump("llvm")
    # forward and backward loops; the LSTM's backward also shifts its recomputed h by one
    # step after the loop (nngraph/scan_grad.py), a loop whose rows are independent too
    loops = {"SimpleRNN": 2, "GRU": 2, "LSTM": 3}[kind]
    assert sum(1 for line in ir.splitlines() if line.startswith("define") and "_claim(" in line) == loops
    _, want = _layer_step(kind, "reference", X, U)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
