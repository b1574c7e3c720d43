"""Sums over a one-hot mask become gathers (passes/one_hot_gather.py), and a costly
value two stages of a row compute is computed once (passes/row_reuse.py): the
Program's structure, and every target's values against NumPy, labels out of range
included."""
from __future__ import annotations

import numpy as np
import pytest

import nngraph as ng
from nngraph.graph import Graph
from nngraph.types import Dim
from passes.lowering import to_program
from passes.one_hot_gather import gathered_stage
from passes.pipeline import optimize
from passes.program import LoopKernel, Stage, instr
from passes.one_hot_scatter import scatter_one_hot_adds
from passes.row_reuse import reuse_row_values

from helpers import compile as compile_on
from test_fusion import agrees

RNG = np.random.default_rng(3)


def _xent(classes=9):
    z = ng.placeholder(("N", classes), name="z")
    y = ng.placeholder(("N",), "int32", name="y")
    loss = ng.cross_entropy(z, y)
    (gz,) = ng.grad(loss, [z])
    return z, y, loss, gz


def _program(g):
    opt, _ = optimize(g, opt_level=2)
    return opt, to_program(opt, 2)


def _row_kernel(prog) -> LoopKernel:
    (k,) = [k for k in prog.schedule if isinstance(k, LoopKernel) and k.outer]
    return k


def _numpy_xent(z, y):
    """Loss and gradient as the one-hot formula gives them: a label outside [0, C)
    selects nothing (its row adds 0 to the loss, and softmax / N to the gradient)."""
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    onehot = (y[:, None] == np.arange(z.shape[1])).astype(np.float64)
    n = z.shape[0]
    loss = -(onehot * (z - lse)).sum() / n
    return loss, (np.exp(z - lse) - onehot) / n


def test_label_term_of_cross_entropy_is_a_gather_not_a_pass_over_the_row():
    z, y, loss, gz = _xent()
    opt, prog = _program(Graph([z, y], [loss, gz]))
    k = _row_kernel(prog)
    over_row = [s for s in k.stages if s.inner]
    # max, sum(exp), the gradient's map: the label's sums run once per row
    assert len(over_row) == 3, prog
    assert not any(i.op == "equal" for s in k.stages if s.reduce and s.inner for i in s.body)
    labels = np.array([0, 8, 3, -1, 9, 100, 4], np.int32)    # the Program itself: any id selects as one-hot
    agrees(opt, prog, [RNG.standard_normal((7, 9)).astype(np.float32), labels])


def test_a_mask_that_varies_along_the_row_is_not_gathered():
    # sum_j (x[i, j] == j) * x[i, j]: the "label" x[i, j] changes with j
    body = [instr("idx", dtype="int64", axis=0), instr("idx", dtype="int64", axis=1),
            instr("load", (0, 1), dtype="int64", buffer=0),
            instr("equal", (2, 1), dtype="bool"), instr("cast", (3,), dtype="float32"),
            instr("const", dtype="float32", value=2.0), instr("mul", (4, 5))]
    assert gathered_stage(Stage((5,), body, (("sum", 6),), []), 1) is None
    fixed = list(body)
    fixed[2] = instr("load", (0,), dtype="int64", buffer=1)       # a label per row
    assert gathered_stage(Stage((Dim("C"),), fixed, (("sum", 6),), []), 1) is None   # C may be 0
    st = gathered_stage(Stage((5,), fixed, (("sum", 6),), []), 1)
    assert st is not None and st.inner == () and not any(i.op == "idx" and i.attr("axis") == 1 for i in st.body)


@pytest.mark.parametrize("n", [1, 7, 300])
def test_cross_entropy_with_gathered_labels_on_every_target(target, n):
    z, y, loss, gz = _xent(classes=9)
    fn = compile_on([z, y], [loss, gz], target=target)
    zv = (RNG.standard_normal((n, 9)) * 4).astype(np.float32)
    yv = RNG.integers(0, 9, n).astype(np.int32)          # (ids outside [0, 9) fail the call)
    got_loss, got_g = fn(zv, yv)
    want_loss, want_g = _numpy_xent(zv, yv)
    np.testing.assert_allclose(got_loss, want_loss, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(got_g, want_g, rtol=2e-5, atol=1e-7)


def test_exponential_of_the_row_is_computed_once_and_rescaled_in_place():
    z, y, loss, gz = _xent(classes=1000)
    _, prog = _program(Graph([z, y], [loss, gz]))
    k = _row_kernel(prog)
    assert sum(i.op == "exp" for s in k.stages for i in s.body) == 2      # as fused
    _, stages = reuse_row_values(prog, k.outer, k.stages)
    assert sum(i.op == "exp" for s in stages for i in s.body) == 1
    (grad_buf,) = {st.buffer for s in stages for st in s.stores if prog.buffers[st.buffer].shape == (k.outer[0], 1000)}
    writer, last = [s for s in stages if any(st.buffer == grad_buf for st in s.stores)]
    assert writer.reduce and any(i.op == "exp" for i in writer.body)      # e stored by the sum stage
    assert any(i.op == "load" and i.attr("buffer") == grad_buf for i in last.body)   # read back, rescaled


def test_row_reuse_leaves_a_kernel_that_reads_its_output_row_alone():
    z, y, loss, gz = _xent(classes=5)
    _, prog = _program(Graph([z, y], [loss, gz]))
    k = _row_kernel(prog)
    (out,) = {st.buffer for s in k.stages if not s.reduce for st in s.stores if s.inner}
    extra = Stage(k.stages[0].inner, list(k.stages[0].body) + [instr("load", (0, 1), buffer=out)],
                  k.stages[0].reduce, [])
    _, stages = reuse_row_values(prog, k.outer, [extra] + list(k.stages[1:]))
    assert sum(i.op == "exp" for s in stages for i in s.body) == 2


def _rewritten(prog, rewrite):
    """prog with its row kernel's stages as `rewrite(program, outer, stages)` makes them."""
    k = _row_kernel(prog)
    _, k.stages = rewrite(prog, k.outer, k.stages)
    return k


def test_one_hot_addend_of_the_gradient_is_one_addition_at_the_label():
    z, y, loss, gz = _xent(classes=9)
    opt, prog = _program(Graph([z, y], [loss, gz]))
    k = _rewritten(prog, lambda p, o, s: scatter_one_hot_adds(p, *reuse_row_values(p, o, s)))
    assert not any(i.op == "equal" for s in k.stages if s.inner for i in s.body), prog
    (fix,) = [s for s in k.stages if any(st.accumulate for st in s.stores)]
    assert fix.inner == () and not fix.reduce
    # the rewritten stages still compute what the graph does (the Program interpreter runs
    # them in order, as the LLVM backend does), labels outside [0, C) included
    labels = np.array([0, 8, 3, -1, 9, 100, 4], np.int32)
    agrees(opt, prog, [RNG.standard_normal((7, 9)).astype(np.float32), labels])


def _row_plus_one_hot(addend):
    """exp(z - max(z, row)) + onehot(y) * addend(z): a max stage and a map stage per row."""
    z = ng.placeholder(("N", 6), name="z")
    y = ng.placeholder(("N",), "int32", name="y")
    onehot = ng.one_hot(y, 6)
    out = ng.exp(z - ng.max(z, axis=1, keepdims=True)) + onehot * addend(z)
    _, prog = _program(Graph([z, y], [out]))
    k = _row_kernel(prog)
    assert [bool(s.inner) for s in k.stages] == [True, True]
    return len(scatter_one_hot_adds(prog, k.outer, k.stages)[1])


def test_an_addend_that_varies_along_the_row_stays_in_the_row():
    assert _row_plus_one_hot(lambda z: 2.0) == 3           # K the same along the row: moved
    assert _row_plus_one_hot(lambda z: z) == 2             # K = z[i, j] varies: left alone
