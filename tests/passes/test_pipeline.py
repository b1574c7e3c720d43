"""The pass pipeline: levels, the log, dumps after every pass, verification that
names the pass at fault, and the same results at opt_level 0 and 2."""
import os

import numpy as np
import pytest

import nngraph as ng
import helpers
from ir_check import ir
from nngraph.compiler import build_graph
from nngraph.errors import VerifyError
from nngraph.graph import Graph
from nngraph.interpreter import evaluate
from nngraph.node import Tensor
from nngraph.types import TensorType
from passes.log import format_log, total_rewrites
from passes.pipeline import PIPELINES, optimize, passes_for
from passes.verify import verify


def _names(level):
    return [name for name, _ in passes_for(level)]


def test_levels_add_passes_in_order():
    assert _names(0) == ["dce"]
    assert {"cse", "constant_folding", "simplify"} <= set(_names(1)) and "stabilize" not in _names(1)
    assert "stabilize" in _names(2) and set(_names(1)) <= set(_names(2))
    assert _names(2)[-1] == "dce"
    with pytest.raises(ValueError, match="opt_level"):
        passes_for(3)


def _small_graph():
    x = ng.placeholder(("N", 3), name="x")
    w = ng.parameter(np.array([0.5, -1.0, 2.0], np.float32), name="w")
    y = ng.sum(ng.tanh(x * w + 0.0) * 1.0)
    return x, w, y


def test_log_records_every_pass_and_fn_stats_carries_it():
    x, w, y = _small_graph()
    fn = helpers.compile([x], y, target="reference", updates={w: w - 0.1 * ng.grad(y, w)})
    log = fn.stats()["passes"]
    assert [e["pass"] for e in log] == _names(2)
    for e in log:
        assert set(e) == {"pass", "seconds", "rewrites", "nodes_before", "nodes_after"}
        assert e["seconds"] >= 0 and all(isinstance(c, int) and c > 0 for c in e["rewrites"].values())
    assert all(a["nodes_after"] == b["nodes_before"] for a, b in zip(log, log[1:]))
    fired = total_rewrites(log)
    assert fired["add_zero"] >= 1 and fired["mul_by_one"] >= 1
    assert log[-1]["nodes_after"] < log[0]["nodes_before"]
    assert "simplify" in format_log(log)
    assert fn.dump("opt") == ng.format(fn.opt_graph)


def test_opt_level_0_runs_only_dce():
    x, w, y = _small_graph()
    fn = helpers.compile([x], y, target="reference", opt_level=0)
    assert [e["pass"] for e in fn.stats()["passes"]] == ["dce"]


def test_dump_dir_writes_the_ir_after_every_pass_in_order(tmp_path):
    x, w, y = _small_graph()
    fn = helpers.compile([x], y, target="reference", dump_dir=str(tmp_path))
    log = fn.stats()["passes"]
    files = [f"00-input.txt"] + [f"{k:02d}-{e['pass']}.txt" for k, e in enumerate(log, start=1)]
    for f in files:
        assert os.path.exists(tmp_path / f), f
        text = (tmp_path / f).read_text()
        assert "  # " in text  # with the user's source locations
        assert ng.format(ng.parse(text), locations=True) == text
    assert (tmp_path / files[-1]).read_text() == ng.format(fn.opt_graph, locations=True)
    assert "test_pipeline.py:" in (tmp_path / files[-1]).read_text()


# ----------------------------------------------------------------------------- verification


def _bad(pass_fn):
    return [("dce", lambda g, c: g), ("bad_pass", pass_fn)]


def _graph():
    return ng.parse(ir("""
        func @main(%x: f32[N,3]) state(%w: f32[3]) {
          %0 = mul %x, %w : f32[N,3]
          %1 = sum %0 {axes=(0,1), keepdims=false} : f32[]
          %2 = constant 0.5 : f32[]
          %3 = mul %w, %2 : f32[3]
          update %w <- %3
          return %1
        }"""))


def test_a_pass_that_changes_an_output_type_is_named():
    def bad(g, c):
        return Graph(g.inputs, [ng.reshape(g.outputs[0], (1,))], g.updates, g.name)
    with pytest.raises(VerifyError, match="after pass 'bad_pass': output 0 was f32\\[\\], now f32\\[1\\]"):
        optimize(_graph(), passes=_bad(bad))


def test_a_pass_that_leaves_a_dangling_placeholder_is_named():
    def bad(g, c):
        stray = ng.placeholder((), name="stray")
        return Graph(g.inputs, [g.outputs[0] + stray], g.updates, g.name)
    with pytest.raises(VerifyError, match="after pass 'bad_pass': placeholder 'stray'.*not a graph input"):
        optimize(_graph(), passes=_bad(bad))


def test_a_pass_that_drops_an_update_is_named():
    with pytest.raises(VerifyError, match="after pass 'bad_pass': the parameter updates changed"):
        optimize(_graph(), passes=_bad(lambda g, c: Graph(g.inputs, g.outputs, [], g.name)))


def test_a_node_whose_type_does_not_follow_from_its_inputs_is_named():
    def bad(g, c):
        liar = Tensor("exp", (g.outputs[0],), {}, TensorType("float32", (2,)))
        return Graph(g.inputs, [ng.sum(liar)], g.updates, g.name)
    with pytest.raises(VerifyError, match="after pass 'bad_pass': exp at .* is typed f32\\[2\\] but its inputs give f32\\[\\]"):
        optimize(_graph(), passes=_bad(bad))


def test_a_cycle_is_named():
    def bad(g, c):
        a = ng.tanh(g.outputs[0])
        b = ng.sin(a)
        object.__setattr__(a, "inputs", (b,))  # forge a cycle (nodes are immutable otherwise)
        return Graph(g.inputs, [b], g.updates, g.name)
    with pytest.raises(VerifyError, match="after pass 'bad_pass': cycle"):
        optimize(_graph(), passes=_bad(bad))


def test_verify_accepts_every_graph_the_pipeline_makes():
    g = _graph()
    for level in PIPELINES:
        out, _ = optimize(g, level)
        verify(out, "final", before=g)


# ----------------------------------------------------------------------------- same results


def _mlp_step(sizes, seed=0):
    rng = np.random.default_rng(seed)
    x = ng.placeholder(("N", sizes[0]), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    h, params = x, []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = ng.parameter((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), name=f"W{i}")
        c = ng.parameter(rng.uniform(-0.1, 0.1, b).astype(np.float32), name=f"b{i}")
        params += [W, c]
        h = h @ W + c
        if i < len(sizes) - 2:
            h = ng.relu(h)
    loss = ng.cross_entropy(h, y)
    grads = ng.grad(loss, params)
    return [x, y], [loss], {p: p - 0.1 * gp for p, gp in zip(params, grads)}


def case_mlp_step():
    ins, outs, ups = _mlp_step((12, 16, 8, 4))
    rng = np.random.default_rng(1)
    return ins, outs, ups, [rng.standard_normal((6, 12)).astype(np.float32), rng.integers(0, 4, 6).astype(np.int32)]


def case_softmax_cross_entropy():
    x = ng.placeholder(("N", 5), name="x")
    t = ng.placeholder(("N",), "int32", name="t")
    s = ng.softmax(x)
    loss = ng.cross_entropy(x, t)
    rng = np.random.default_rng(2)
    return [x, t], [loss, s, ng.grad(loss, x)], None, [rng.standard_normal((7, 5)).astype(np.float32) * 3,
                                                      rng.integers(0, 5, 7).astype(np.int32)]


def case_binary_cross_entropy():
    z = ng.placeholder(("N",), name="z")
    t = ng.placeholder(("N",), name="t")
    a = ng.binary_cross_entropy(z, t, from_logits=True)
    b = ng.binary_cross_entropy(ng.sigmoid(z) * 0.5 + 0.25, t)
    rng = np.random.default_rng(3)
    return [z, t], [a, b, ng.grad(a + b, z)], None, [rng.standard_normal(9).astype(np.float32) * 4,
                                                    rng.uniform(0, 1, 9).astype(np.float32)]


def case_batch_norm():
    x = ng.placeholder(("N", 3, 2, 2), name="x")
    gamma = ng.parameter(np.array([1.0, 0.5, 2.0], np.float32), name="gamma")
    beta = ng.parameter(np.array([0.1, -0.2, 0.3], np.float32), name="beta")
    y = ng.batch_norm(x, gamma, beta)
    loss = ng.sum(y * y * 0.5) + ng.mean(y)
    gg, gb = ng.grad(loss, [gamma, beta])
    rng = np.random.default_rng(4)
    return [x], [y, loss, ng.grad(loss, x)], {gamma: gamma - 0.01 * gg, beta: beta - 0.01 * gb}, \
        [rng.standard_normal((4, 3, 2, 2)).astype(np.float32)]


def case_elementwise_chain():
    x = ng.placeholder(("N", 8), name="x")
    a = ng.parameter(np.linspace(-1, 1, 8).astype(np.float32), name="a")
    b = ng.parameter(np.float32(0.3), name="b")
    y = ng.sum(ng.tanh(x * a + b) * ng.sigmoid(x))
    z = ng.mean(ng.exp(-(x - 1.0) ** 2.0) / 4.0 - ng.log1p(x * x) * 1.0 + 0.0)
    return [x], [y, z] + ng.grad(y + z, [x, a, b]), None, \
        [np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)]


def case_hand_written_formulas():
    x = ng.placeholder(("N", 4), name="x")
    e = ng.exp(x)
    sm = e / ng.sum(e, axis=1, keepdims=True)
    lse = ng.log(ng.sum(ng.exp(x), axis=1))
    sq = ng.sum(x ** 2.0 + ng.log(1.0 + x * x) + (ng.exp(x) - 1.0) / 2.0)
    return [x], [sm, lse, sq, ng.grad(sq, x)], None, \
        [np.random.default_rng(6).standard_normal((5, 4)).astype(np.float32)]


CASES = [case_mlp_step, case_softmax_cross_entropy, case_binary_cross_entropy, case_batch_norm,
         case_elementwise_chain, case_hand_written_formulas]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_opt_levels_agree_on_the_reference_target(case):
    inputs, outputs, updates, feeds = case()
    graph, _ = build_graph(inputs, outputs, updates)
    params = graph.params()
    start = [p.value.copy() for p in params]
    results = {}
    for level in (0, 1, 2):
        for p, v in zip(params, start):
            p.value = v
        fn = helpers.compile(inputs, outputs, target="reference", opt_level=level, updates=updates)
        outs = fn(*feeds)
        results[level] = [np.asarray(o) for o in outs] + [p.value.copy() for p, _ in graph.updates]
    for p, v in zip(params, start):
        p.value = v
    for level in (1, 2):
        for k, (a, b) in enumerate(zip(results[0], results[level])):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6,
                                       err_msg=f"result {k} differs between opt_level 0 and {level}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_optimised_graph_matches_the_graph_as_built_on_the_interpreter(case):
    """The passes alone (no lowering): the NumPy interpreter on both graphs."""
    inputs, outputs, updates, feeds = case()
    graph, _ = build_graph(inputs, outputs, updates)
    opt, _ = optimize(graph, 2)
    env = {}
    from nngraph.interpreter import bind_dims
    env = bind_dims(graph.inputs, feeds)
    fd = dict(zip(graph.inputs, feeds))
    for k, (a, b) in enumerate(zip(evaluate(graph.roots(), fd, env), evaluate(opt.roots(), fd, env))):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6, err_msg=f"result {k}")


def test_mlp_784_512_256_10_step_rewrite_counts():
    ins, outs, ups = _mlp_step((784, 512, 256, 10))
    graph, _ = build_graph(ins, outs, ups)
    opt, log = optimize(graph, 2)
    fired = total_rewrites(log)
    assert log[0]["nodes_before"] == len(graph.nodes())
    assert log[-1]["nodes_after"] == len(opt.nodes()) < len(graph.nodes()) - 10
    assert fired["stop_gradient"] == 1 and fired["merge:constant"] >= 5 and fired["implicit_broadcast"] >= 2
    assert not any(n.op in ("stop_gradient", "broadcast_to") for n in opt.nodes())
