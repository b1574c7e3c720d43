"""Graph passes and loops: passes run inside scan bodies, a forward scan merges with
the twin its gradient builds, unread ys are pruned, verify checks bodies."""
import numpy as np
import pytest

import nngraph as ng
from helpers import compile, rand
from nngraph.graph import Graph
from nngraph.node import make
from passes.cse import cse
from passes.pipeline import optimize
from passes.scans import in_bodies, merge_scan_twins, prune_scan_outputs
from passes.verify import verify


def _scan_of(out):
    return out.inputs[0]


def _loop():
    xs = ng.placeholder(("T", 3), "float64", name="xs")
    h, ys = ng.scan(lambda c, x: (ng.tanh(c * x) + ng.tanh(c * x) * 1.0, ng.exp(c) * x), ng.constant(np.ones(3)), xs)
    return xs, h, ys


def test_passes_run_inside_scan_bodies():
    xs, h, ys = _loop()
    before = [n.op for n in _scan_of(h).attrs["body"].nodes()]
    assert before.count("tanh") == 2 and "constant" in before
    g, log = optimize(Graph([xs], [h, ys]), opt_level=2)
    body = _scan_of(g.outputs[0]).attrs["body"]
    ops = [n.op for n in body.nodes()]
    assert ops.count("tanh") == 1 and ops.count("mul") == 2       # CSE and x*1 -> x inside the loop
    X = rand((5, 3), 1)
    np.testing.assert_allclose(compile([xs], [h, ys])(X)[0], compile(g.inputs, g.outputs)(X)[0], rtol=1e-14)


def test_in_bodies_reaches_nested_bodies_first():
    m = ng.placeholder(("T", "K"), "float64", name="m")
    tot, _ = ng.scan(lambda a, r: (a + ng.scan(lambda c, v: (c + v * 1.0, None), ng.constant(0.0, "float64"), r)[0],
                                   None), ng.constant(0.0, "float64"), m)
    seen = []

    def spy(graph, counts=None):
        seen.append(len(graph.inputs))
        return graph
    in_bodies(spy)(Graph([m], [tot]))
    assert seen == [2, 2, 1]      # inner body (carry, v), outer body (carry, row), then the graph


def test_forward_scan_and_its_gradient_twin_run_as_one_loop():
    xs, h, ys = _loop()
    loss = ng.sum(h) + ng.sum(ys)
    g = Graph([xs], [loss, ng.grad(loss, xs)])
    forward = [n for n in g.nodes() if n.op == "scan" and not n.attrs["reverse"]]
    assert len(forward) == 2 and forward[1].attrs["body"].extends(forward[0].attrs["body"])
    merged = merge_scan_twins(g)
    verify(merged, "merge_scan_twins", before=g)
    assert len([n for n in merged.nodes() if n.op == "scan" and not n.attrs["reverse"]]) == 1
    X = rand((4, 3), 2)
    np.testing.assert_allclose(compile([xs], merged.outputs)(X)[1], compile([xs], g.outputs)(X)[1], rtol=1e-14)


def test_two_gradients_of_one_scan_share_the_forward_twin():
    xs, h, ys = _loop()
    loss = ng.sum(h) + ng.sum(ys)
    g = cse(merge_scan_twins(Graph([xs], [ng.grad(loss, xs), ng.grad(loss * 2.0, xs)])))
    assert len([n for n in g.nodes() if n.op == "scan" and not n.attrs["reverse"]]) == 1


def test_unread_ys_are_pruned_and_the_body_stops_computing_them():
    xs, h, ys = _loop()
    g = prune_scan_outputs(Graph([xs], [h]))
    s = _scan_of(g.outputs[0])
    assert len(s.type.parts) == 1 and g.outputs[0].attrs["index"] == 0
    opt, log = optimize(Graph([xs], [h]), opt_level=1)
    assert "exp" not in {n.op for n in _scan_of(opt.outputs[0]).attrs["body"].nodes()}
    assert {"prune:scan_ys": 1} == next(e["rewrites"] for e in log if e["pass"] == "prune_scan_outputs")
    # a read y keeps its place after a pruned one
    xs2 = ng.placeholder(("T", 3), "float64", name="xs2")
    c, (a, b) = ng.scan(lambda c, x: (c + x, (c * 2.0, c * 3.0)), ng.constant(np.zeros(3)), xs2)
    g2 = prune_scan_outputs(Graph([xs2], [b]))
    assert g2.outputs[0].attrs["index"] == 1 and len(_scan_of(g2.outputs[0]).type.parts) == 2
    X = rand((4, 3), 1)
    np.testing.assert_allclose(compile([xs2], b)(X), compile(g2.inputs, g2.outputs)(X)[0])


def test_verify_names_a_bad_body():
    xs, h, ys = _loop()
    s = _scan_of(h)
    body = s.attrs["body"]
    W = ng.parameter(np.ones(3), name="W")
    bad = body.with_outputs([body.carry_out[0] * W] + body.ys_out)
    n = make("scan", s.inputs, canonical=False, **dict(s.attrs, body=bad))
    with pytest.raises(ng.VerifyError, match="holds parameter W"):
        verify(Graph([xs], [make("scan_output", (n,), index=0)]), "test")
