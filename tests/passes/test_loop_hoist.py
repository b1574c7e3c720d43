"""Loop passes: loop-invariant code motion out of scans (passes/loop_hoist.py) and
the per-step fusion of the body's pointwise work, seen in the optimised graph, in
fn.stats()["loops"] / ["passes"] and in fn.dump("kernels")."""
from __future__ import annotations

import numpy as np

import nngraph as ng
from nngraph.graph import Graph
from nngraph.interpreter import evaluate
from passes.log import Rewrites
from passes.loop_hoist import hoist_scans
from scan_models import elman, lstm


def _scan_of(graph):
    return next(n for n in graph.nodes() if n.op == "scan")


def test_the_input_projection_becomes_one_product_over_all_steps():
    xs, h0, p, (hT, ys) = elman()
    counts = Rewrites()
    g = hoist_scans(Graph([xs, h0], [hT, ys]), counts)
    scan = _scan_of(g)
    body = scan.attrs["body"]
    ops = [n.op for n in body.nodes()]
    assert ops.count("matmul") == 1                       # only h @ Wh is left per step
    (moved,) = scan.inputs[body.n_carry:body.n_carry + body.n_xs]
    assert moved.op == "matmul" and moved.inputs[0] is xs and str(moved.type) == "f32[T,N,6]"
    assert counts["hoist:matmul"] == 1
    X = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    H0 = np.ones((3, 6), np.float32)
    before = evaluate([hT, ys], {xs: X, h0: H0}, {"T": 5, "N": 3})
    after = evaluate(list(g.outputs), {xs: X, h0: H0}, {"T": 5, "N": 3})
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_elementwise_only_carry_free_work_stays_in_the_loop():
    xs = ng.placeholder(("T", "N", 4), name="xs")
    h0 = ng.placeholder(("N", 4), name="h0")
    hT, ys = ng.scan(lambda h, x: (h * ng.sigmoid(x), h), h0, xs)
    counts = Rewrites()
    g = hoist_scans(Graph([xs, h0], [hT, ys]), counts)
    assert not counts and _scan_of(g).inputs[1] is xs


def test_a_lower_rank_per_step_operand_is_aligned_after_the_time_axis():
    xs = ng.placeholder(("T", "N", 4), name="xs")
    us = ng.placeholder(("T", 5), name="us")            # one row vector per step
    h0 = ng.placeholder(("N", 5), name="h0")
    W = ng.parameter(np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5), name="W")
    hT, ys = ng.scan(lambda h, x: (ng.tanh(x[0] @ W + x[1] + h), h), h0, (xs, us))
    counts = Rewrites()
    g = hoist_scans(Graph([xs, us, h0], [hT, ys]), counts)
    assert counts["hoist:matmul"] == 1 and counts["hoist:add"] == 1
    rng = np.random.default_rng(1)
    feeds = {xs: rng.standard_normal((3, 2, 4)).astype(np.float32),
             us: rng.standard_normal((3, 5)).astype(np.float32), h0: np.zeros((2, 5), np.float32)}
    for a, b in zip(evaluate([hT, ys], feeds, {"T": 3, "N": 2}), evaluate(list(g.outputs), feeds, {"T": 3, "N": 2})):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_lstm_step_is_one_gemm_and_one_fused_pointwise_kernel():
    xs, (h0, c0), p, ((hT, cT), hs) = lstm()
    fn = ng.compile([xs, h0, c0], [hT, cT, hs], target="reference")
    (loop,) = fn.stats()["loops"]
    assert loop["kernels_per_step"] == 2 and loop["library_calls_per_step"] == 1
    (moved,) = loop["hoisted"]
    assert moved.startswith("matmul:f32[T,N,24]@scan_models.py:")
    hoists = [e for e in fn.stats()["passes"] if e["pass"] == "hoist_scans"]
    assert hoists and hoists[0]["rewrites"] == {"hoist:matmul": 1}
    text = fn.dump("kernels")
    before, loop_text = text.split("loop over T steps")
    assert "matmul @t_matmul[T,N,24] = 1.0 * @xs @ @Wx" in before      # x_t @ Wx for all steps at once
    assert "hoisted: [" in loop_text
    assert loop_text.count(": matmul ") == 1                            # h @ Wh per step


def test_a_value_joins_the_kernel_that_stores_what_it_reads():
    """c2 and h2 = o * tanh(c2) both returned: one loop over their shape, not two."""
    x = ng.placeholder(("N", 8), name="x")
    c2 = ng.exp(x) + 1.0
    h2 = ng.tanh(c2) * x
    fn = ng.compile([x], [c2, h2], target="reference")
    assert fn.stats()["kernels"] == 1
    X = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    a, b = fn(X)
    np.testing.assert_allclose(b, np.tanh(np.exp(X) + 1) * X, rtol=1e-6)
