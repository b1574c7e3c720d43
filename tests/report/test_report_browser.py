"""The report in a real browser (headless Chromium): the page's script runs to
the end with no error on the console, a screenshot shows the graph (kernel-coloured
pixels in the graph's box), and opening it at #kN zooms to kernel N's nodes."""
import re
import subprocess

import numpy as np
import pytest

import nngraph as ng
from report_check import read_png

SIZE = "1200,900"


def _run(chromium, *args):
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={SIZE}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _dom(chromium, url):
    r = _run(chromium, "--dump-dom", url)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    return r.stdout, console


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    x = ng.placeholder(("N", 12), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W = ng.parameter(ng.init.glorot_uniform((12, 8), seed=0), name="W")
    V = ng.parameter(ng.init.glorot_uniform((8, 3), seed=1), name="V")
    loss = ng.cross_entropy(ng.relu(x @ W) @ V, y)
    gW, gV = ng.grad(loss, [W, V])
    fn = ng.compile([x, y], loss, updates={W: W - 0.1 * gW, V: V - 0.1 * gV}, target="cpu")
    args = (np.random.default_rng(0).standard_normal((10, 12)).astype(np.float32), np.arange(10, dtype=np.int32) % 3)
    fn.profile(*args, calls=2)
    return fn, fn.report(tmp_path_factory.mktemp("report") / "step.html")


def test_the_script_runs_without_errors_and_the_screenshot_shows_the_graph(chromium, report, tmp_path):
    _, path = report
    dom, console = _dom(chromium, f"file://{path}")
    assert console == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-ready="1"' in body and "data-errors" not in body
    left, top, width, height = map(int, re.search(r'data-graph-rect="([\d,]+)"', body).group(1).split(","))
    assert width > 400 and height > 300
    shot = tmp_path / "shot.png"
    r = _run(chromium, f"--screenshot={shot}", f"file://{path}")
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    img = read_png(shot)[:, :, :3].astype(int)
    area = img[top + 2:top + height - 2, left + 2:left + width - 2]
    background = np.abs(area - np.array([250, 250, 250])).max(axis=2) <= 6
    coloured = (area.max(axis=2) - area.min(axis=2)) > 40            # kernel colours, not greys
    assert (~background).mean() > 0.05, "the graph's box is blank"
    assert coloured.mean() > 0.01, "no kernel-coloured node in the screenshot"


def test_opening_at_a_kernel_zooms_to_its_nodes(chromium, report):
    fn, path = report
    plain, _ = _dom(chromium, f"file://{path}")
    k = next(i for i, kern in enumerate(fn.runner.program.schedule) if "matmul" not in kern.name)
    zoomed, console = _dom(chromium, f"file://{path}#k{k}")
    assert console == []
    box = re.compile(r'<svg id="g-opt"[^>]*viewBox="([^"]+)"')
    assert box.search(plain).group(1) != box.search(zoomed).group(1)
    dimmed = re.findall(r'<g class="([^"]*)" data-i', zoomed)
    assert any("dim" in c for c in dimmed)
    assert all("dim" not in c for c in dimmed if re.search(rf"\bk{k}\b", c))


PROBE = """<script>
var B = document.body, g = document.querySelector('#g-opt g.node:not(.src)');
g.querySelector('rect').dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
B.dataset.tip = document.getElementById('tip').textContent;
B.dataset.tipShown = document.getElementById('tip').style.display;
var k = document.querySelector('#g-kernels g.kernel[data-k="1"]');
k.querySelector('rect').dispatchEvent(new MouseEvent('click', {bubbles: true}));
B.dataset.shown = document.querySelector('.gbox svg.on').id;
</script></body>"""


def test_hover_shows_the_node_and_a_kernel_click_opens_it(chromium, report, tmp_path):
    fn, path = report
    probed = tmp_path / "probed.html"
    probed.write_text(open(path, encoding="utf-8").read().replace("</body>", PROBE), encoding="utf-8")
    dom, console = _dom(chromium, f"file://{probed}")
    assert console == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    tip = re.search(r'data-tip="([^"]*)"', body).group(1)
    assert "built at test_report_browser.py:" in tip and "kernel: k" in tip and " = " in tip
    assert 'data-tip-shown="block"' in body and 'data-shown="g-opt"' in body
    name = fn.runner.program.schedule[1].name
    assert re.findall(r'<g class="([^"]*k1\b[^"]*)" data-i', dom) and all(
        "dim" not in c for c in re.findall(r'<g class="([^"]*\bk1\b[^"]*)" data-i', dom)), name
    assert any("dim" in c for c in re.findall(r'<g class="([^"]*)" data-i', dom))
