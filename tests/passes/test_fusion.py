"""Fusion: kernel counts for the figures in the issue, and the shapes fusion must
take (row-wise softmax kernels, matmul epilogues, reduction epilogues). Every
program here is also checked against the graph interpreter."""
from __future__ import annotations

import numpy as np

import nngraph as ng
from nngraph.graph import Graph
from nngraph.interpreter import bind_dims, evaluate
from passes.lowering import to_program
from passes.memory import peak_bytes
from passes.pipeline import optimize
from passes.program import LoopKernel, MatmulKernel
from passes.program_interpreter import run_program

RNG = np.random.default_rng(1)


def lower(g, level=2):
    opt, _ = optimize(g, opt_level=level)
    return opt, to_program(opt, level)


def agrees(g, prog, feeds):
    env = bind_dims(g.inputs, feeds)
    want = evaluate(list(g.outputs) + [v for _, v in g.updates], dict(zip(g.inputs, feeds)), env)
    outs, new = run_program(prog, feeds, [p.value for p in g.params()], env)
    for a, b in zip(outs + new, want):
        np.testing.assert_allclose(a, b, rtol=3e-5, atol=3e-6)


def loop_kernels(prog):
    return [k for k in prog.schedule if isinstance(k, LoopKernel)]


def test_elementwise_chain_with_reduction_and_gradient_takes_at_most_3_kernels():
    x = ng.placeholder(("N", 64), name="x")
    a = ng.parameter(RNG.random(64).astype(np.float32), name="a")
    b = ng.parameter(RNG.random(64).astype(np.float32), name="b")
    y = ng.sum(ng.tanh(x * a + b) * ng.sigmoid(x))
    g = Graph([x], [y] + ng.grad(y, [x, a, b]))
    opt, prog = lower(g)
    assert prog.stats["kernels"] <= 3, prog.stats["fusion"]["kernels"]
    assert lower(g, 0)[1].stats["kernels"] > 10  # opt_level 0: one kernel per op
    agrees(opt, prog, [RNG.standard_normal((16, 64)).astype(np.float32)])


def _mlp_step(sizes=(784, 512, 256, 10)):
    x = ng.placeholder(("N", sizes[0]), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    h, ps = x, []
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = ng.parameter((RNG.standard_normal((m, n)) * 0.05).astype(np.float32), name=f"W{i}")
        b = ng.parameter((RNG.standard_normal(n) * 0.1).astype(np.float32), name=f"b{i}")
        ps += [W, b]
        h = h @ W + b
        if i < len(sizes) - 2:
            h = ng.relu(h)
    loss = ng.cross_entropy(h, y)
    gs = ng.grad(loss, ps)
    return Graph([x, y], [loss], [(p, p - 0.1 * gp) for p, gp in zip(ps, gs)])


def test_mlp_sgd_step_takes_at_most_12_non_library_kernels_and_reports_peak_bytes():
    g = _mlp_step()
    opt, prog = lower(g)
    non_library = len(loop_kernels(prog))
    assert non_library <= 12, prog.stats["fusion"]["kernels"]
    assert prog.stats["library_calls"] == 8           # 3 forward, 3 weight gradients, 2 input gradients
    peak = peak_bytes(prog, {"N": 128})
    # the forward activations (f32 relu outputs, bool masks, logits) and gradients must fit;
    # far below what one buffer per op needs
    assert 0 < peak < peak_bytes(lower(g, 0)[1], {"N": 128}) / 2
    feeds = [RNG.standard_normal((128, 784)).astype(np.float32), RNG.integers(0, 10, 128).astype(np.int32)]
    agrees(opt, prog, feeds)


def test_softmax_cross_entropy_forward_and_backward_share_one_row_kernel():
    x = ng.placeholder(("N", 10), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    loss = ng.cross_entropy(x, y)
    g = Graph([x, y], [loss, ng.grad(loss, x)])
    opt, prog = lower(g)
    rows = [k for k in loop_kernels(prog) if k.outer == (ng.Dim("N"),)]
    assert len(rows) == 1 and len(loop_kernels(prog)) <= 2
    kinds = [r[0] for s in rows[0].stages for r in s.reduce]
    assert kinds.count("max") == 1 and "sum" in kinds
    agrees(opt, prog, [RNG.standard_normal((6, 10)).astype(np.float32) * 30,
                       RNG.integers(0, 10, 6).astype(np.int32)])


def test_softmax_is_one_kernel_with_three_stages():
    x = ng.placeholder((4, 9), name="x")
    g = Graph([x], [ng.softmax(x * 2.0)])
    opt, prog = lower(g)
    assert len(prog.schedule) == 1
    assert [bool(s.reduce) for s in prog.schedule[0].stages] == [True, True, False]
    agrees(opt, prog, [RNG.standard_normal((4, 9)).astype(np.float32)])


def test_bias_and_relu_ride_in_the_matmul_epilogue_and_transposes_become_flags():
    x = ng.placeholder(("N", 6), name="x")
    W = ng.parameter(RNG.standard_normal((5, 6)).astype(np.float32), name="W")
    b = ng.parameter(RNG.standard_normal(5).astype(np.float32), name="b")
    g = Graph([x], [ng.relu(x @ W.T + b)])
    opt, prog = lower(g)
    assert len(prog.schedule) == 1
    (k,) = prog.schedule
    assert isinstance(k, MatmulKernel) and k.trans_b and not k.trans_a
    ops = [i.op for i in k.epilogue.body]
    assert "acc" in ops and "relu" in ops and "add" in ops
    agrees(opt, prog, [RNG.standard_normal((3, 6)).astype(np.float32)])


def test_sgd_update_of_a_bias_is_the_epilogue_of_its_gradient_reduction():
    x = ng.placeholder(("N", 4), name="x")
    b = ng.parameter(RNG.standard_normal(4).astype(np.float32), name="b")
    loss = ng.sum(ng.tanh(x + b))
    g = Graph([x], [loss], [(b, b - 0.5 * ng.grad(loss, b))])
    opt, prog = lower(g)
    upd = prog.updates[0][1]
    (k,) = [k for k in prog.schedule if upd in k.writes()]
    assert any(s.reduce for s in k.stages)  # the same kernel reduces and updates
    agrees(opt, prog, [RNG.standard_normal((5, 4)).astype(np.float32)])


def test_expensive_value_used_by_several_kernels_is_materialised_once():
    x = ng.placeholder((8, 8), name="x")
    e = x
    for _ in range(6):
        e = ng.tanh(ng.exp(e * 0.5) + 1.0)
    g = Graph([x], [ng.sum(e, 0), ng.sum(e, 1), e * 2.0 + 1.0])
    opt, prog = lower(g)
    why = prog.stats["fusion"]["materialised"]
    assert any("costly to recompute" in r for r in why.values())
    agrees(opt, prog, [RNG.standard_normal((8, 8)).astype(np.float32)])


def test_stats_say_why_values_were_materialised():
    x = ng.placeholder((3, 4), name="x")
    g = Graph([x], [ng.sum(ng.exp(x), 1)])
    _, prog = lower(g)
    reasons = list(prog.stats["fusion"]["materialised"].values())
    assert any("output" in r for r in reasons)
    assert prog.stats["kernels"] == 1 and prog.stats["library_calls"] == 0
