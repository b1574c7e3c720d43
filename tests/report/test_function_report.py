"""fn.report(path): one self-contained HTML file. It parses, draws one SVG node per
graph node (before and after the passes) coloured one colour per fused kernel,
names every pass that ran, and embeds no external URL; on every target."""
import pytest

import nngraph as ng
from helpers import small_training_step
from report_check import external_urls, kernel_fills, nodes_of, parse, svgs

TARGETS = ["reference", "cpu", "gpu"]


def check_report(fn, html):
    parse(html)
    drawn = svgs(html)
    assert len(nodes_of(drawn["g-built"])) == len(fn.graph.nodes())
    assert len(nodes_of(drawn["g-opt"])) == len(fn._run_graph.nodes())
    fills = kernel_fills(drawn["g-opt"])
    kernels = fn.runner.program.schedule
    assert set(fills) == {f"k{k}" for k in range(len(kernels))}       # every kernel computes some node
    assert all(len(f) == 1 for f in fills.values())                    # one colour per kernel
    assert len({next(iter(f)) for f in fills.values()}) == len(fills)  # and a different one each
    for e in fn.stats()["passes"]:
        assert f"{e['pass']}</b>" in html
    assert external_urls(html) == []
    for k in kernels:
        assert k.name in html


@pytest.mark.parametrize("backend", TARGETS)
def test_report_of_a_training_step(backend, tmp_path):
    if backend == "gpu":
        from gpu_skip import require_gpu_target
        require_gpu_target()
    fn, args, _, _ = small_training_step(backend)
    fn(*args)
    path = fn.report(tmp_path / "step.html")
    html = open(path, encoding="utf-8").read()
    check_report(fn, html)
    assert "fn.profile() has not run" in html
    code = {"cpu": "define ", "gpu": "@triton.jit", "reference": None}[backend]
    if code:
        assert code in html
    for r in fn.stats()["fusion"]:
        assert r["where"] in html and r["reason"].split(" ")[0] in html


def test_report_shows_the_profile_when_it_ran(tmp_path):
    fn, args, _, _ = small_training_step("cpu")
    table = fn.profile(*args, calls=2)
    html = open(fn.report(tmp_path / "p.html"), encoding="utf-8").read()
    check_report(fn, html)
    assert html.count('class="bar"') == len(table.rows)
    assert "GEMM rate)" in html and "float32 GEMM" in html and "GFLOP/s" in html


def test_a_pass_that_rewrote_shows_its_diff(tmp_path):
    x = ng.placeholder((4,), name="x")
    fn = ng.compile([x], ng.log(ng.softmax(x * 1.0)), target="reference")
    html = open(fn.report(tmp_path / "r.html"), encoding="utf-8").read()
    assert '<span class="del">-' in html and '<span class="add">+' in html
    assert "the IR did not change" in html            # and one that did not


def test_hover_data_carries_a_nodes_own_name(tmp_path):
    """An imported model's node names (ONNX) reach the hover text: make(name=...) is how
    an importer names a node."""
    import json
    import re

    from nngraph.node import make
    x = ng.placeholder((3,), name="x")
    y = make("exp", (x,), name="Exp_0")
    fn = ng.compile([x], y * 2.0, target="reference")
    html = open(fn.report(tmp_path / "n.html"), encoding="utf-8").read()
    data = json.loads(re.search(r'id="nodes-data">(.*?)</script>', html, re.S).group(1))
    assert [r for r in data["g-built"] if r[1] == "exp"][0][5] == "Exp_0"
