"""The losses and metrics of a model's outputs ("heads"): one loss per output (one
for all, a list in output order, or a dict by output name), optional loss_weights,
metrics for every output or per output. The training loss is the weighted sum, plus
the layers' regularisation penalties. Score names follow Keras: "loss", and with
several outputs "<output>_loss" and "<output>_<metric>"."""
from __future__ import annotations

from ..errors import ShapeError
from ..node import Tensor
from . import losses


def per_output(value, names: list, what: str, default=None) -> list:
    """`value` spread over the outputs: one value for all, a list in output order or a
    dict by output name (a name missing from the dict gets `default`: loss weights 1,
    as Keras)."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"{what}: no output named {', '.join(map(repr, unknown))}; "
                             f"the outputs are {', '.join(names)}")
        return [value.get(n, default) for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{what}: {len(value)} given for {len(names)} outputs ({', '.join(names)})")
        return list(value)
    return [value] * len(names)


def check_names(loss, metrics) -> None:
    """Unknown loss or metric names are an error at compile time, before the outputs
    are known (a model that builds on its first data)."""
    for spec in (loss.values() if isinstance(loss, dict) else loss if isinstance(loss, (list, tuple)) else [loss]):
        if spec is not None:
            losses.get_loss(spec)
    groups = metrics.values() if isinstance(metrics, dict) else [metrics or []]
    for ms in groups:
        for m in (ms if isinstance(ms, (list, tuple)) else [ms]):
            losses.get_metric(m)


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ")"


class Heads:
    """Loss functions, weights and metrics resolved for outputs named `names`."""

    def __init__(self, model_name: str, names: list, loss, loss_weights, metrics):
        self.model_name, self.names = model_name, list(names)
        specs = per_output(loss, self.names, "loss")
        if any(s is None for s in specs):
            missing = [n for n, s in zip(self.names, specs) if s is None]
            raise ValueError(f"loss: no loss given for output {', '.join(missing)}")
        self.loss_names = [s if isinstance(s, str) else getattr(s, "__name__", "loss") for s in specs]
        self.loss_fns = [losses.get_loss(s) for s in specs]
        weights = per_output(1.0 if loss_weights is None else loss_weights, self.names, "loss_weights", 1.0)
        self.weights = [float(w) for w in weights]
        if isinstance(metrics, dict):
            per = per_output(metrics, self.names, "metrics", [])
        else:
            per = [metrics or []] * len(self.names)
        self.metrics = [[losses.get_metric(m) for m in (ms if isinstance(ms, (list, tuple)) else [ms])]
                        for ms in per]

    @property
    def several(self) -> bool:
        return len(self.names) > 1

    def score_names(self) -> list:
        out = ["loss"]
        if self.several:
            out += [f"{n}_loss" for n in self.names]
        for n, ms in zip(self.names, self.metrics):
            out += [f"{n}_{m}" if self.several else m for m, _ in ms]
        return out

    def _loss(self, i: int, out: Tensor, t: Tensor) -> Tensor:
        try:
            loss = self.loss_fns[i](out, t)
        except ShapeError as e:
            raise ShapeError(f"{self.model_name}: loss {self.loss_names[i]!r} cannot compare output "
                             f"'{self.names[i]}' {_shape(out)} {out.dtype} with targets {_shape(t)} {t.dtype} "
                             f"(check the last layer's size and the targets' shape): {e}") from None
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            raise ValueError(f"{self.model_name}: the loss must be a scalar tensor, got {loss!r}")
        return loss

    def scores(self, outs: list, targets: list, penalties: list) -> list:
        """[total loss, (per-output losses), metrics...] as tensors, in score_names() order."""
        each = [self._loss(i, o, t) for i, (o, t) in enumerate(zip(outs, targets))]
        total = None
        for w, l in zip(self.weights, each):  # a weight of 0 keeps the term: zero gradients, not none
            term = l if w == 1.0 else w * l
            total = term if total is None else total + term
        for p in penalties:
            total = total + p
        out = [total] + (each if self.several else [])
        for o, t, ms in zip(outs, targets, self.metrics):
            out += [fn(o, t) for _, fn in ms]
        return out
