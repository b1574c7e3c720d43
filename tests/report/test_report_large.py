"""A report stays usable for a graph of a few thousand nodes: every node is drawn,
the page opens on the collapsed one-box-per-kernel view, and the file stays under
a few MB (sizes only; how long it takes is measured in benchmarks, not here)."""
import os

import numpy as np

import nngraph as ng
from report_check import nodes_of, parse, svgs


def residual_tower(layers):
    x = ng.placeholder(("N", 16), name="x")
    h, params = x, []
    rng = np.random.default_rng(0)
    for i in range(layers):
        W = ng.parameter((0.1 * rng.standard_normal((16, 16))).astype(np.float32), name=f"W{i}")
        b = ng.parameter(np.zeros(16, np.float32), name=f"b{i}")
        params += [W, b]
        h = ng.tanh(h @ W + b) * 0.5 + h
    loss = ng.mean(h * h)
    grads = ng.grad(loss, params)
    return ng.compile([x], loss, updates={p: p - 0.01 * g for p, g in zip(params, grads)}, target="reference")


def test_a_graph_of_three_thousand_nodes(tmp_path):
    fn = residual_tower(120)
    assert len(fn.graph.nodes()) > 3000
    path = fn.report(tmp_path / "big.html")
    size = os.path.getsize(path)
    assert size < 4_000_000, f"{size / 1e6:.1f} MB"
    html = open(path, encoding="utf-8").read()
    parse(html)
    drawn = svgs(html)
    assert len(nodes_of(drawn["g-built"])) == len(fn.graph.nodes())
    assert len(nodes_of(drawn["g-opt"])) == len(fn._run_graph.nodes())
    assert '<button data-view="g-kernels" class=on>' in html
    assert html.count('<g class="kernel') == len(fn.runner.program.schedule)
