"""model.fit(..., report="run.html"): a callback that records the run and, when
training ends, writes one HTML file with the loss and metric curves per epoch
(train and validation), the learning rate and the time of every step, the
compile times, and the compiled training step's own report (graph, passes,
kernels, memory, code)."""
from __future__ import annotations

import time
from html import escape

import numpy as np

from ..nn.callbacks import Callback
from .charts import line_chart
from .function_report import function_report, write_html
from .page import page
from .sections import table


class TrainingReport(Callback):
    """Writes the training report to `path` at the end of fit (also when a
    callback stopped training early)."""

    def __init__(self, path, title: str | None = None):
        self.path, self.title = path, title
        self.epochs: list = []
        self.lrs: list = []
        self.step_seconds: list = []

    def on_train_begin(self, logs=None):
        self.epochs, self.lrs, self.step_seconds = [], [], []
        self._t = time.perf_counter()

    def on_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.step_seconds.append(now - self._t)     # step plus fit's own work, until model.step_seconds
        self._t = now
        lr = getattr(getattr(self.model, "optimizer", None), "lr", None)
        if lr is not None:
            self.lrs.append(float(np.asarray(lr.value)))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs or {}))
        self._t = time.perf_counter()               # validation is not a step

    def on_train_end(self, logs=None):
        write_html(self.path, self.html())

    # ------------------------------------------------------------------ drawing
    def curves(self) -> str:
        keys = [k for k in (self.epochs[0] if self.epochs else {}) if not k.startswith("val_")]
        charts = []
        for k in keys:
            series = {f"train {k}": [e.get(k) for e in self.epochs]}
            if any(f"val_{k}" in e for e in self.epochs):
                series[f"validation {k}"] = [e.get(f"val_{k}") for e in self.epochs]
            charts.append(line_chart(k, series, "epoch"))
        if self.lrs:
            charts.append(line_chart("learning rate", {"lr": self.lrs}, "step"))
        steps = list(getattr(self.model, "step_seconds", None) or self.step_seconds)
        if steps:
            charts.append(line_chart("step time (ms)", {"step": [1e3 * s for s in steps]}, "step"))
        return "".join(charts) or "<p class=muted>no epoch finished</p>"

    def summary(self) -> str:
        steps = list(getattr(self.model, "step_seconds", None) or self.step_seconds)
        rows = [{"what": f"compile {k}", "value": f"{v:.3f} s"}
                for k, v in (getattr(self.model, "compile_seconds", None) or {}).items()]
        if steps:
            rows.append({"what": "steps", "value": str(len(steps))})
            rows.append({"what": "step time, median", "value": f"{1e3 * float(np.median(steps)):.3f} ms"})
        for k, v in (self.epochs[-1] if self.epochs else {}).items():
            rows.append({"what": f"last epoch {k}", "value": f"{v:.4f}"})
        return table(rows, [("what", "what"), ("value", "value")])

    def train_function(self):
        """The compiled training step: fit's ("train"), or the data-parallel one
        ("train_distributed", nngraph/nn/distributed_fit.py)."""
        fns = getattr(self.model, "_fns", {}) or {}
        return next((f for key, f in fns.items() if key[0] in ("train", "train_distributed")), None)

    def html(self) -> str:
        name = getattr(self.model, "name", "model")
        title = self.title or f"nngraph training: {name}"
        sections = [("curves", "Training curves", self.curves()), ("summary", "Run", self.summary())]
        data = {}
        fn = self.train_function()
        if fn is not None:
            more, data = function_report(fn)
            sections += [(sid, f"Training step: {head}", body) for sid, head, body in more]
        n = len(self.epochs)
        facts = escape(f"{n} epoch{'' if n == 1 else 's'} · {len(self.step_seconds)} steps · target "
                       f"{getattr(self.model, 'target', '?')}")
        return page(title, facts, sections, data)
