"""Model (functional: from input placeholders to an output built by calling layers)
and Sequential (a list of layers). compile / fit / evaluate / predict / save / load.

A model builds three compiled functions that share its parameters:
- the training step (inputs, targets -> loss, metrics; updates: the optimiser's
  and the layers' running statistics): forward in training mode, ng.grad and the
  update in ONE compiled call;
- evaluation (inputs, targets -> loss, metrics) and prediction (inputs -> output),
  in inference mode (no dropout, batch norm on running statistics).
They are compiled when first needed; the batch size is symbolic, so the last,
shorter batch runs without recompiling.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from .. import saving
from ..node import Tensor, make
from ..types import is_float
from . import losses
from .layers import CALLS, Input, Layer, collect_updates

_warned_fallback: list = []


def resolve_target(target: str | None) -> str:
    """The target to compile for: "cpu" unless told otherwise; when the CPU backend is
    not available here, "reference" with a warning (once)."""
    if target is not None:
        return target
    from runtime import targets
    ok, why = targets.available("cpu")
    if ok:
        return "cpu"
    if not _warned_fallback:
        warnings.warn(f"nngraph.nn: {why}; models compile for target='reference' (NumPy) instead",
                      RuntimeWarning, stacklevel=3)
        _warned_fallback.append(True)
    return "reference"


class Model:
    """A model from input placeholders to one output tensor, built by calling layers
    on tensors:

        x = ng.nn.Input((64,))
        h = ng.nn.Dense(32, activation="relu")(x)
        model = ng.nn.Model(x, ng.nn.Dense(10)(h))
    """

    def __init__(self, inputs, outputs, name: str = "model"):
        self.inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if not isinstance(outputs, Tensor):
            raise TypeError("Model: outputs must be one tensor (the model's output)")
        self.output = outputs
        self.name = name
        self._layers = None
        self._reset_compiled()
        self.optimizer = None
        self.stop_training = False
        self.history = None

    # ---------------------------------------------------------------- structure
    def _reset_compiled(self):
        self._fns: dict = {}
        self.compile_seconds: dict = {}

    def forward(self, training: bool):
        """(input placeholders, output tensor) rebuilt in training or inference mode;
        layers' state updates go to the active collect_updates()."""
        memo = {id(i): i for i in self.inputs}
        order = []

        def go(t):
            r = memo.get(id(t))
            if r is not None:
                return r
            call = CALLS.get(t)
            if call is not None:
                layer, x = call
                r = layer(go(x), training=training)
                if layer not in order:
                    order.append(layer)
            elif t.op == "placeholder":
                raise ValueError(f"Model: the output needs placeholder '{t.name}' ({t.type}, made at {t.where}), "
                                 "which is not among the model's inputs")
            elif not t.inputs:
                r = t
            else:
                new = [go(i) for i in t.inputs]
                r = t if all(a is b for a, b in zip(new, t.inputs)) else make(t.op, new, name=t.name, **t.attrs)
            memo[id(t)] = r
            return r

        out = go(self.output)
        self._layers = order
        return list(self.inputs), out

    @property
    def layers(self) -> list:
        if self._layers is None:
            self.forward(False)
        return self._layers

    def state_dict(self) -> dict:
        """{"<position>_<layer type>.<param>": Parameter} for every parameter of every layer
        (running statistics too). Keys go by position, not by the layers' generated names,
        so a freshly built model of the same architecture loads a saved one."""
        out = {}
        for i, layer in enumerate(self.layers):
            for k, p in layer.params.items():
                out[f"{i}_{type(layer).__name__.lower()}.{k}"] = p
        return out

    @property
    def params(self) -> list:
        return list(self.state_dict().values())

    @property
    def trainable_params(self) -> list:
        return [p for p in self.params if p.trainable]

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn=print) -> str:
        from .summary import summary_text
        text = summary_text(self)
        if print_fn is not None:
            print_fn(text)
        return text

    # ---------------------------------------------------------------- compiling
    def compile(self, optimizer="adam", loss="cross_entropy", metrics=None, target=None, opt_level=2,
                check_numerics=False, dump_dir=None):
        """Choose optimiser, loss, metrics and target ("cpu" by default). Compiling the
        functions themselves happens on first use (see `compiled`)."""
        from .. import optim
        self.optimizer = optim.get(optimizer)
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "loss")
        self.loss_fn = losses.get_loss(loss)
        self.metrics = [losses.get_metric(m) for m in (metrics or [])]
        self.target = resolve_target(target)
        self.opt_level, self.check_numerics, self.dump_dir = opt_level, check_numerics, dump_dir
        self._reset_compiled()
        if getattr(self, "input_shape", True) is not None:
            self.forward(False)  # build the layers now, so their parameters exist
        return self

    def _need_compiled(self):
        if self.optimizer is None:
            raise RuntimeError(f"{self.name}: call model.compile(optimizer, loss, ...) before fit/evaluate")

    def _targets_placeholder(self, out: Tensor, y_kind: tuple):
        """Targets for `out`: class ids (int32, out.shape[:-1]) or values (float32, out.shape)."""
        from ..api import placeholder
        kind, ndim = y_kind
        if kind == "int" and ndim == out.ndim - 1:
            return placeholder(tuple(out.shape[:-1]), "int32", name="targets")
        return placeholder(tuple(out.shape), "float32", name="targets")

    def _compile(self, key, build):
        t0 = time.perf_counter()
        fn = build()
        self.compile_seconds[key[0]] = time.perf_counter() - t0
        self._fns[key] = fn
        return fn

    def compiled(self, which: str, y_kind=("int", 1)):
        """The compiled function "train", "evaluate" or "predict" (built on first use)."""
        if which != "predict":
            self._need_compiled()
        key = (which, y_kind)
        if key in self._fns:
            return self._fns[key]
        target = self.target if self.optimizer is not None else resolve_target(None)
        common = dict(target=target, opt_level=getattr(self, "opt_level", 2),
                      check_numerics=getattr(self, "check_numerics", False))
        if which == "predict":
            def build():
                xs, out = self.forward(False)
                return ng_compile(xs, out, name="predict", **common)
        elif which == "evaluate":
            def build():
                xs, out = self.forward(False)
                t = self._targets_placeholder(out, y_kind)
                return ng_compile(xs + [t], self._scores(out, t), name="evaluate", **common)
        elif which == "train":
            def build():
                with collect_updates() as c:
                    xs, out = self.forward(True)
                t = self._targets_placeholder(out, y_kind)
                scores = self._scores(out, t)
                ups = self.optimizer.minimize(scores[0], self.trainable_params)
                for p, v in c.updates.items():
                    if p in ups:
                        raise ValueError(f"{self.name}: parameter {p.name} is updated by the optimiser and a layer")
                    ups[p] = v
                return ng_compile(xs + [t], scores, updates=ups, name="train_step",
                                  dump_dir=self.dump_dir, **common)
        else:
            raise ValueError(f"no compiled function {which!r}; choose train, evaluate or predict")
        return self._compile(key, build)

    def _scores(self, out, t) -> list:
        loss = self.loss_fn(out, t)
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            raise ValueError(f"{self.name}: the loss must be a scalar tensor, got {loss!r}")
        return [loss] + [fn(out, t) for _, fn in self.metrics]

    def _score_names(self) -> list:
        return ["loss"] + [n for n, _ in self.metrics]

    # ---------------------------------------------------------------- data
    def _xs(self, X) -> list:
        xs = list(X) if isinstance(X, (list, tuple)) else [X]
        if len(xs) != len(self.inputs):
            raise ValueError(f"{self.name}: {len(self.inputs)} input arrays expected, {len(xs)} given")
        out = []
        for a, ph in zip(xs, self.inputs):
            a = np.asarray(a)
            if is_float(ph.dtype) and a.dtype != np.float32 and a.dtype.kind in "fiub":
                a = a.astype(np.float32)
            out.append(a)
        n = {len(a) for a in out}
        if len(n) != 1:
            raise ValueError(f"{self.name}: input arrays have different lengths {sorted(n)}")
        return out

    def _ys(self, y):
        y = np.asarray(y)
        if y.dtype.kind in "iub":
            return y.astype(np.int32), ("int", y.ndim)
        if y.dtype.kind == "f":
            return y.astype(np.float32), ("float", y.ndim)
        raise ValueError(f"{self.name}: targets must be numbers, got dtype {y.dtype}")

    @staticmethod
    def _n(xs) -> int:
        return len(xs[0])

    # ---------------------------------------------------------------- training
    def fit(self, X, y, epochs: int = 1, batch_size: int = 32, validation_data=None, shuffle: bool = True,
            callbacks=None, verbose: int = 1, seed: int | None = 0) -> dict:
        """Train; returns the history {"loss": [per epoch], "accuracy": [...], "val_loss": ...}
        (also kept as model.history). verbose=1 shows a tqdm bar per epoch, 2 one line
        per epoch, 0 nothing."""
        self._need_compiled()
        xs, (y, y_kind) = self._xs(X), self._ys(y)
        n = self._n(xs)
        if len(y) != n:
            raise ValueError(f"{self.name}: {n} inputs but {len(y)} targets")
        if n == 0:
            raise ValueError(f"{self.name}: no training data")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        step_fn = self.compiled("train", y_kind)
        # target="gpu": the data set moved to the device once (when it fits), so that
        # batches are gathered there and no step copies its batch from the host
        host = xs + [y]
        *xs, y = data = step_fn.to_device_if_fits(host)
        on_device = any(d is not a for d, a in zip(data, host))
        names = self._score_names()
        cbs = list(callbacks or [])
        for c in cbs:
            c.set_model(self)
        steps_per_epoch = -(-n // batch_size)
        self.optimizer.begin(steps_per_epoch * epochs, steps_per_epoch)
        rng = np.random.default_rng(seed)
        history = {k: [] for k in names}
        if validation_data is not None:
            history.update({f"val_{k}": [] for k in names})
        self.history, self.stop_training = history, False
        self.step_seconds = []
        global_step = 0
        for c in cbs:
            c.on_train_begin()
        for epoch in range(epochs):
            for c in cbs:
                c.on_epoch_begin(epoch)
            order = rng.permutation(n) if shuffle else np.arange(n)
            if on_device:
                order = step_fn.to_device(order)
            sums, seen = np.zeros(len(names)), 0
            bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{epochs}", verbose == 1)
            t_epoch = time.perf_counter()
            for b in range(steps_per_epoch):
                idx = order[b * batch_size:(b + 1) * batch_size]
                self.optimizer.on_step(global_step, epoch)
                t0 = time.perf_counter()
                vals = step_fn(*[a[idx] for a in xs], y[idx])
                self.step_seconds.append(time.perf_counter() - t0)
                vals = [float(v) for v in vals]
                sums += np.asarray(vals) * len(idx)
                seen += len(idx)
                global_step += 1
                logs = dict(zip(names, vals))
                for c in cbs:
                    c.on_batch_end(b, logs)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4f}" for k, v in zip(names, sums / seen)}, refresh=False)
            logs = dict(zip(names, (sums / seen).tolist()))
            if validation_data is not None:
                scores = self.evaluate(*validation_data, batch_size=max(batch_size, 256))
                logs.update({f"val_{k}": v for k, v in scores.items()})
            for k, v in logs.items():
                history[k].append(v)
            if bar is not None:
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=True)
                bar.close()
            elif verbose == 2:
                print(f"epoch {epoch + 1}/{epochs} ({time.perf_counter() - t_epoch:.2f}s): "
                      + ", ".join(f"{k}={v:.4f}" for k, v in logs.items()))
            for c in cbs:
                c.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for c in cbs:
            c.on_train_end(history)
        return history

    def evaluate(self, X, y, batch_size: int = 256) -> dict:
        """{"loss": ..., metric: ...} over all of X (means weighted by batch size), inference mode."""
        self._need_compiled()
        xs, (y, y_kind) = self._xs(X), self._ys(y)
        n = self._n(xs)
        if len(y) != n or n == 0:
            raise ValueError(f"{self.name}: evaluate needs as many targets as inputs (>0), got {n} and {len(y)}")
        fn = self.compiled("evaluate", y_kind)
        sums = np.zeros(len(self._score_names()))
        for s in range(0, n, batch_size):
            vals = fn(*[a[s:s + batch_size] for a in xs], y[s:s + batch_size])
            sums += np.asarray([float(v) for v in vals]) * len(y[s:s + batch_size])
        return dict(zip(self._score_names(), (sums / n).tolist()))

    def predict(self, X, batch_size: int = 256) -> np.ndarray:
        """The model's output for X in inference mode (logits unless the model ends in
        softmax or sigmoid)."""
        xs = self._xs(X)
        fn = self.compiled("predict")
        n = self._n(xs)
        outs = [fn(*[a[s:s + batch_size] for a in xs]) for s in range(0, n, batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0,) + tuple(self.output.shape[1:]), np.float32)

    # ---------------------------------------------------------------- saving
    def save(self, path) -> None:
        """Every layer parameter (running statistics included) to an .npz (ng.save)."""
        saving.save(path, self.state_dict())

    def load(self, path) -> None:
        """Values written by save(); every parameter must be there with its shape."""
        saving.load(path, self.state_dict())


class Sequential(Model):
    """Layers applied one after the other to inputs of `input_shape` (no batch axis).
    With no input_shape, the first fit/predict takes it from the data."""

    def __init__(self, layers=(), input_shape=None, name: str = "sequential", input_dtype="float32"):
        self._seq = []
        for layer in layers:
            self.add(layer)
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.input_dtype = input_dtype
        self.name = name
        self._layers = self._seq
        self._reset_compiled()
        self.optimizer, self.stop_training, self.history = None, False, None
        self._inputs = None

    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential: expected a layer, got {layer!r}")
        if any(layer is other for other in self._seq):
            raise ValueError(f"Sequential: layer {layer.name} is listed twice")
        self._seq.append(layer)
        if hasattr(self, "_fns"):
            self._reset_compiled()

    @property
    def inputs(self):
        if self._inputs is None:
            if self.input_shape is None:
                raise ValueError(f"{self.name}: input_shape unknown; pass Sequential(..., input_shape=...) "
                                 "or call fit/predict first")
            self._inputs = [Input(self.input_shape, dtype=self.input_dtype)]
        return self._inputs

    @property
    def output(self):
        return self.forward(False)[1]

    @property
    def layers(self):
        return self._seq

    def forward(self, training: bool):
        xs = self.inputs
        h = xs[0]
        for layer in self._seq:
            h = layer(h, training=training)
        return list(xs), h

    def _xs(self, X):
        if self.input_shape is None:
            a = np.asarray(X[0] if isinstance(X, (list, tuple)) else X)
            self.input_shape = tuple(a.shape[1:])
        return super()._xs(X)


def ng_compile(*args, **kwargs):
    """ng.compile, looked up when called (so wrappers of ng.compile apply)."""
    import nngraph
    return nngraph.compile(*args, **kwargs)


def _progress(total, desc, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional; fall back to a line per epoch
        return None
    return tqdm(total=total, desc=desc, unit="batch", leave=True, dynamic_ncols=True)

