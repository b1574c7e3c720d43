"""model.fit(..., report=path): the training report holds the loss and metric curves
per epoch (train and validation), the learning rate and step time as SVG charts,
the compile times, and the training step's own report."""
import numpy as np

import nngraph as ng
from report_check import external_urls, nodes_of, parse, svgs


def test_fit_writes_curves_and_the_step_report(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int32)
    model = ng.nn.Sequential([ng.nn.Dense(8, activation="relu"), ng.nn.Dense(2)], input_shape=(6,), name="tiny")
    model.compile(ng.optim.SGD(ng.optim.OneCycle(0.1)), "cross_entropy", ["accuracy"], target="reference")
    path = tmp_path / "run.html"
    hist = model.fit(X, y, epochs=3, batch_size=32, validation_data=(X[:32], y[:32]), verbose=0,
                     report=str(path))
    html = path.read_text(encoding="utf-8")
    parse(html)
    assert external_urls(html) == []
    for title in ("loss", "accuracy", "learning rate", "step time (ms)"):
        assert f">{title}</text>" in html
    for series in ("train loss", "validation loss", "train accuracy", "validation accuracy"):
        assert series in html
    drawn = svgs(html)
    charts = [s for k, s in drawn.items() if k.startswith("anon")]
    lines = [p for s in charts for p in s.iter("{http://www.w3.org/2000/svg}polyline")]
    points = {len(p.get("points").split()) for p in lines}
    assert 3 in points and 9 in points            # 3 epochs; 9 steps of lr and step time
    assert f"{hist['loss'][-1]:.4f}" in html and "compile train" in html
    step = model.compiled("train")
    assert len(nodes_of(drawn["g-opt"])) == len(step._run_graph.nodes())
    assert "Training step: Kernels" in html


def test_the_report_is_written_when_training_stops_early(tmp_path):
    X = np.random.default_rng(1).standard_normal((40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int32)
    model = ng.nn.Sequential([ng.nn.Dense(2)], input_shape=(3,))
    model.compile("sgd", "cross_entropy", target="reference")
    stop = ng.nn.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    model.fit(X, y, epochs=5, batch_size=20, verbose=0, callbacks=[stop], report=str(tmp_path / "r.html"))
    assert "2 epochs · 4 steps" in (tmp_path / "r.html").read_text(encoding="utf-8")   # stopped after 2 of 5
