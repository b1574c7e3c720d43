"""Nodes that hold a graph (a scan and its body) are drawn as boxes holding that
graph: the layout gives such a node its own size, and the report draws one SVG node
per node of the outer graph and of every body."""
import re

import numpy as np
import pytest

import nngraph as ng
from nngraph.report.layout import layered
from report_check import SVG_NS, external_urls, kernel_fills, nodes_of, parse, svgs


def test_layout_gives_a_big_node_its_size_and_moves_its_neighbours():
    # 0 -> 2, 1 -> 2, 2 -> 3; node 0 is a 300 x 100 box, the rest 120 x 28
    lay = layered([0, 1, 2, 3], [(0, 2), (1, 2), (2, 3)], lambda k: False, 120, 28, 16, 44, sizes={0: (300, 100)})
    assert lay.rows == [[0, 1], [2], [3]]
    (x0, y0), (x1, y1) = lay.pos[0], lay.pos[1]
    assert (x0, x1) == (150, 300 + 16 + 60)             # the box's width pushes its neighbour right
    assert y0 == y1 == 50                                 # the row is as tall as its tallest node
    assert lay.pos[2][1] == 100 + 44 + 14                 # the next row starts below the box
    assert lay.width == 300 + 16 + 120 + 16 and lay.height == (100 + 44) + 2 * (28 + 44)


def _all_nodes(graph) -> int:
    """Nodes of a graph and, recursively, of the bodies its nodes hold."""
    from nngraph.report.graph_svg import region_of
    return sum(1 + (_all_nodes(region_of(n)) if region_of(n) is not None else 0) for n in graph.nodes())


def _box(g):
    r = g.find(f"{{{SVG_NS}}}rect")
    x, y, w, h = (float(r.get(k)) for k in ("x", "y", "width", "height"))
    return x, y, x + w, y + h


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_report_of_a_scan_graph_draws_each_body_inside_its_box(backend, tmp_path):
    x = ng.placeholder(("N", "T", 3), name="x")
    lstm = ng.nn.LSTM(4, return_sequences=True, seed=0)
    loss = ng.sum(lstm(x) ** 2)
    grads = ng.grad(loss, lstm.parameters())            # the gradient is a reverse scan
    fn = ng.compile([x], loss, updates={p: p - 0.1 * g for p, g in zip(lstm.parameters(), grads)}, target=backend)
    html = open(fn.report(tmp_path / "scan.html"), encoding="utf-8").read()
    parse(html)
    assert external_urls(html) == []
    drawn = svgs(html)
    for view, graph in (("g-built", fn.graph), ("g-opt", fn._run_graph)):
        nodes = nodes_of(drawn[view])
        assert len(nodes) == _all_nodes(graph) > len(graph.nodes())   # body nodes drawn too
        scans = [n for n in graph.nodes() if n.op == "scan"]
        regions = [g for g in nodes if "region" in g.get("class").split()]
        assert len(regions) == len(scans) >= 2                         # the forward and the reverse scan
        for scan, region in zip(scans, regions):
            x0, y0, x1, y1 = _box(region)
            inside = [g for g in nodes if g is not region and x0 < _box(g)[0] and _box(g)[2] < x1
                      and y0 < _box(g)[1] and _box(g)[3] < y1]
            assert len(inside) == len(scan.attrs["body"].graph.nodes())   # exactly its body's nodes
    assert "scan %" in html and "T steps" in html


PROBE = """<script>
var B = document.body, r = document.querySelector('#g-opt g.region'), g = r.nextElementSibling;
while (!g.matches('g.node')) g = g.nextElementSibling;
g.querySelector('rect').dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
B.dataset.tip = document.getElementById('tip').textContent;
</script></body>"""


def test_a_scan_report_in_a_browser_shows_the_body_and_its_hover(chromium, tmp_path):
    """Headless Chromium: no script error, and hovering the first node inside the scan's
    box names it as a value of that scan's body, with the line that built it."""
    from test_report_browser import _dom
    x = ng.placeholder(("N", "T", 3), name="x")
    fn = ng.compile([x], ng.nn.GRU(4, seed=0)(x), target="cpu")
    path = fn.report(tmp_path / "gru.html")
    probed = tmp_path / "probed.html"
    probed.write_text(open(path, encoding="utf-8").read().replace("</body>", PROBE), encoding="utf-8")
    dom, console = _dom(chromium, f"file://{probed}")
    assert console == []
    tip = re.search(r'data-tip="([^"]*)"', re.search(r"<body[^>]*>", dom).group(0)).group(1)
    scan = next(n for n in fn._run_graph.nodes() if n.op == "scan")
    assert re.match(r"%\d+/\w+ = ", tip) and f"built at {scan.where}" in tip, tip


def _body_nodes(graph) -> list:
    """(scan, body node) for every node of every body, nested ones too."""
    from nngraph.report.graph_svg import region_of
    out = []
    for n in graph.nodes():
        if region_of(n) is not None:
            out += [(n, m) for m in region_of(n).nodes()] + _body_nodes(region_of(n))
    return out


@pytest.mark.parametrize("layer", [ng.nn.LSTM, ng.nn.SimpleRNN])
def test_body_nodes_are_coloured_by_the_kernel_of_their_step(layer, tmp_path):
    """Training step of an LSTM / Elman net on cpu: every body node that a body kernel
    computes is drawn in that kernel's colour; body kernels are numbered after the
    schedule, so each colour is one kernel's, and the fusion rows and the profile
    name body nodes (scan/value) with the line that built them."""
    from nngraph.report.graph_svg import SOURCES
    from passes.loop import ScanLoop
    x = ng.placeholder(("N", "T", 3), name="x")
    rnn = layer(4, return_sequences=True, seed=0)
    loss = ng.sum(rnn(x) ** 2)
    grads = ng.grad(loss, rnn.parameters())
    fn = ng.compile([x], loss, updates={p: p - 0.1 * g for p, g in zip(rnn.parameters(), grads)}, target="cpu")
    nodes_map, schedule = fn.runner.program.nodes, fn.runner.program.schedule
    loops = [k for k in schedule if isinstance(k, ScanLoop)]
    per_step = sum(len(k.body) for k in loops)
    assert len(loops) >= 2 and len(nodes_map.kernel_names) == len(schedule) + per_step
    body = [(s, m) for s, m in _body_nodes(fn._run_graph) if m.op not in SOURCES]
    assert body and all(nodes_map.kernels_of(m) for _, m in body)             # every computed body node
    assert all(min(nodes_map.kernels_of(m)) >= len(schedule) for _, m in body)  # by a body kernel
    html = open(fn.report(tmp_path / "rnn.html"), encoding="utf-8").read()
    fills = kernel_fills(svgs(html)["g-opt"])
    body_kernels = {f"k{k}" for _, m in body for k in nodes_map.kernels_of(m)[:1]}
    assert body_kernels <= set(fills) and len(body_kernels) > 1
    assert all(len(f) == 1 for f in fills.values())                           # one colour per kernel
    assert len({next(iter(f)) for f in fills.values()}) == len(fills)         # a different one each
    for k in body_kernels:
        name = nodes_map.kernel_names[int(k[1:])]
        assert "/" in name and f'"{name}"' in html                             # hover names it loop/kernel
    where = {m.where for _, m in body}
    rows = fn.profile(np.ones((2, 3, 3), np.float32), calls=1).rows
    loop_rows = [r for r in rows if r["kernel"] in {k.name for k in loops}]
    assert loop_rows and all(any("/" in c["node"] and c["where"] in where for c in r["computes"]) for r in loop_rows)
    body_rows = [r for r in fn.stats()["fusion"] if "/" in r["node"]]          # body values kept apart
    assert body_rows and all(r["where"] in where and r["kernel"].count("/") == 1
                             and all("/" in k for k in r["read_by"]) for r in body_rows)
