"""Sibling fusion: a pointwise kernel over the domain a reduction walks joins the
reduction's stage (stores inside a reduce stage), only when neither depends on the
other; every target computes the same values as NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import nngraph as ng
from nngraph.graph import Graph
from passes.lowering import to_program
from passes.pipeline import optimize
from passes.program import LoopKernel, Stage, Store, instr
from passes.sibling_fusion import fuse_siblings

from helpers import compile as compile_on, tol
from test_fusion import agrees

RNG = np.random.default_rng(7)


def _program(g):
    opt, _ = optimize(g, opt_level=2)
    return opt, to_program(opt, 2)


def _loss_and_grad():
    x = ng.placeholder(("N",), name="x")
    f = ng.sum(ng.tanh(x * 0.7 + 0.1) * ng.sigmoid(x))
    (gx,) = ng.grad(f, [x])
    return x, f, gx


def _numpy_loss_and_grad(x):
    t, s = np.tanh(x * 0.7 + 0.1), 1 / (1 + np.exp(-x))
    return (t * s).sum(), (1 - t * t) * 0.7 * s + t * s * (1 - s)


def test_loss_and_gradient_become_one_kernel_with_stores_in_the_reduce_stage():
    x, f, gx = _loss_and_grad()
    opt, prog = _program(Graph([x], [f, gx]))
    assert prog.stats["kernels"] == 1, prog.stats["fusion"]["kernels"]
    (k,) = prog.schedule
    assert k.stages[0].reduce and k.stages[0].stores
    assert sum(i.op == "load" for i in k.stages[0].body) == 1      # x read once
    assert sum(i.op == "tanh" for i in k.stages[0].body) == 1      # tanh computed once
    agrees(opt, prog, [RNG.standard_normal(37).astype(np.float32)])


def test_row_reduction_takes_a_pointwise_sibling_over_its_rows():
    x = ng.placeholder(("N", 9), name="x")
    e = ng.exp(x)
    opt, prog = _program(Graph([x], [ng.sum(e, axis=1), e * 2.0]))
    assert prog.stats["kernels"] == 1, prog.stats["fusion"]["kernels"]
    agrees(opt, prog, [RNG.standard_normal((5, 9)).astype(np.float32)])


def _sum_and_map(map_reads_sum: bool):
    """k0: buffer 1 = sum(buffer 0[i]); k1: buffer 2[i] = buffer 0[i] * (buffer 1 or 2)."""
    red = LoopKernel("k0_sum", (), [
        Stage((4,), [instr("idx", dtype="int64", axis=0), instr("load", (0,), buffer=0)], (("sum", 1),), []),
        Stage((), [instr("result", stage=0, slot=0)], (), [Store(1, (), 0)])])
    other = instr("load", (), buffer=1) if map_reads_sum else instr("const", value=2.0)
    mp = LoopKernel("k1_mul", (4,), [Stage((), [
        instr("idx", dtype="int64", axis=0), instr("load", (0,), buffer=0), other, instr("mul", (1, 2))],
        (), [Store(2, (0,), 3)])])
    return {0: red, 1: mp}


def test_independent_siblings_merge_and_dependent_ones_do_not():
    merged = fuse_siblings(_sum_and_map(False), lambda b: b)
    assert list(merged) == [0] and merged[0].stages[0].stores == [Store(2, (0,), 3)]
    assert len(merged[0].stages[0].body) == 4     # idx and load shared, const and mul added
    assert len(fuse_siblings(_sum_and_map(True), lambda b: b)) == 2


def test_different_domains_are_not_merged():
    x = ng.placeholder(("N", 4), name="x")
    opt, prog = _program(Graph([x], [ng.sum(x, axis=0), ng.exp(x)]))
    assert prog.stats["kernels"] == 2
    agrees(opt, prog, [RNG.standard_normal((6, 4)).astype(np.float32)])


@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_fused_loss_and_gradient_on_every_target(target, n):
    x, f, gx = _loss_and_grad()
    fn = compile_on([x], [f, gx], target=target)
    xv = RNG.standard_normal(n).astype(np.float32)
    got_f, got_g = fn(xv)
    want_f, want_g = _numpy_loss_and_grad(xv.astype(np.float64))
    np.testing.assert_allclose(got_f, want_f, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_g, want_g, **tol("float32"))
