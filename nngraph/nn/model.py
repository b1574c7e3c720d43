"""Model: the Keras functional model (from input placeholders to one or several
outputs, built by calling layers) and, subclassed, the PyTorch/Keras-subclassing
style (layers assigned to attributes, a `forward` or `call` method; see module.py).
compile / fit / evaluate / predict / save / load.

A model builds three compiled functions that share its parameters:
- the training step (inputs, targets -> loss, metrics; updates: the optimiser's
  and the layers' running statistics): forward in training mode, ng.grad and the
  update in ONE compiled call;
- evaluation (inputs, targets -> loss, metrics) and prediction (inputs -> outputs),
  in inference mode (no dropout, batch norm on running statistics).
They are compiled when first needed; the batch size is symbolic, so the last,
shorter batch runs without recompiling.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from .. import saving
from ..node import Tensor
from ..types import is_float
from . import device_data
from . import tracing as _tracing
from .device_data import is_device_array
from .heads import Heads, check_names
from .layers import Input, collect_updates, current_mode, tracing_mode
from .tree import sublayers

_warned_fallback: list = []


def resolve_target(target: str | None) -> str:
    """The target to compile for: "cpu" unless told otherwise; when the CPU backend is
    not available here, "reference" with a warning (once)."""
    if target is not None:
        return target
    from ..compiler import target_available
    ok, why = target_available("cpu")
    if ok:
        return "cpu"
    if not _warned_fallback:
        warnings.warn(f"nngraph.nn: {why}; models compile for target='reference' (NumPy) instead",
                      RuntimeWarning, stacklevel=3)
        _warned_fallback.append(True)
    return "reference"


class Model:
    """A model from input placeholders to one or several outputs, built by calling
    layers on tensors:

        x = ng.nn.Input((64,))
        h = ng.nn.Dense(32, activation="relu")(x)
        model = ng.nn.Model(x, ng.nn.Dense(10)(h))
        two = ng.nn.Model(x, [ng.nn.Dense(10, name="digit")(h), ng.nn.Dense(1, name="odd")(h)])

    Subclassed with no inputs/outputs (as ng.nn.Module), it runs the subclass's
    forward(x, training=False) (or call) on the layers assigned to its attributes.
    """

    _holds_parameters = True

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj._init_args = (args, kwargs)
        obj._setup(None)  # so a subclass that forgets super().__init__() still works
        return obj

    def __init__(self, inputs=None, outputs=None, name: str | None = None):
        self._setup(name)
        if inputs is None and outputs is None:
            if type(self) is Model:
                raise TypeError("Model(inputs, outputs): give the input placeholders and the output tensor(s); "
                                "to write forward yourself, subclass ng.nn.Module")
            return
        if inputs is None or outputs is None:
            raise TypeError("Model(inputs, outputs): both are needed")
        self._functional = True
        self._inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        self.output_names, self._outputs = _tracing.named_outputs(outputs)

    def _setup(self, name) -> None:
        if "_fns" in self.__dict__:
            if name is not None:
                self.name = name
            return
        self.name = name or _tracing.default_name(self)
        self._functional = False
        self._inputs, self._outputs, self._input_specs, self._layers = None, None, None, None
        self._reset_compiled()
        self.optimizer, self.stop_training, self.history = None, False, None
        self.epochs_done = 0
        self._checked_params = False
        self._base_attrs = set(self.__dict__) | {"_base_attrs"}

    def _reset_compiled(self):
        self._fns: dict = {}
        self.compile_seconds: dict = {}

    # ---------------------------------------------------------------- structure
    @property
    def inputs(self) -> list:
        if self._inputs is None:
            self._inputs = self._make_inputs()
        return self._inputs

    def _make_inputs(self) -> list:
        """Placeholders for a subclassed model, from build(input_shape) or the first data."""
        return _tracing.placeholders(self)

    @property
    def built(self) -> bool:
        return self._functional or self._inputs is not None or self._input_specs is not None

    def build(self, input_shape) -> None:
        """Build for inputs of `input_shape` (with the batch axis, as Keras: (None, 64);
        a list of shapes for several inputs): makes every layer's parameters."""
        _tracing.set_specs_from_shapes(self, input_shape)
        self._graph(False)

    @property
    def outputs(self) -> list:
        return self._outputs if self._functional else self._graph(False)[1]

    @property
    def output(self) -> Tensor:
        if "output" in self.__dict__:  # a subclass's own attribute (self.output = Dense(10))
            return self.__dict__["output"]
        outs = self.outputs
        if len(outs) != 1:
            raise ValueError(f"{self.name} has {len(outs)} outputs ({', '.join(self.output_names)}); use .outputs")
        return outs[0]

    @output.setter
    def output(self, value) -> None:
        self.__dict__["output"] = value

    def _graph(self, training: bool):
        """(input placeholders, output tensors) rebuilt in training or inference mode;
        layers' state updates go to the active collect_updates()."""
        if self._functional:
            outs, order = _tracing.replay(self, {id(i): i for i in self._inputs}, training)
            self._layers = order
            return list(self._inputs), outs
        xs = self.inputs
        with tracing_mode(training):
            result = self(*xs, training=training)
        self.output_names, outs = _tracing.named_outputs(result)
        if not self._checked_params:
            self._checked_params = True
            _tracing.check_parameters_used(self, outs)
        return list(xs), outs

    def forward(self, training: bool):
        """(input placeholders, output tensor, or list of them) in the given mode; a
        subclass replaces it with its own forward(x, training=False)."""
        xs, outs = self._graph(training)
        return xs, outs[0] if len(outs) == 1 else outs

    forward._graph_alias = True

    def __call__(self, *xs, training: bool | None = None):
        """Apply the model to tensors (a functional model replays its layers on them;
        a subclassed one runs its forward), e.g. inside another model. On NumPy arrays
        it is predict()."""
        if xs and all(isinstance(x, np.ndarray) for x in xs):  # net(array), as in eager PyTorch
            return self.predict(list(xs) if len(xs) > 1 else xs[0])
        mode = bool(training) if training is not None else bool(current_mode())
        if self._functional:
            if len(xs) != len(self._inputs):
                raise ValueError(f"{self.name}: {len(self._inputs)} inputs expected, {len(xs)} given")
            outs, _ = _tracing.replay(self, {id(i): x for i, x in zip(self._inputs, xs)}, mode)
            return outs[0] if len(outs) == 1 else outs
        if self._input_specs is None and all(isinstance(x, Tensor) for x in xs):
            self._input_specs = [(tuple(x.shape[1:]), x.dtype, x.name) for x in xs]
        with tracing_mode(mode):
            return _tracing.run_forward(self, xs, mode)

    @property
    def layers(self) -> list:
        if "layers" in self.__dict__:  # a subclass's own attribute (self.layers = [...], as in PyTorch)
            return self.__dict__["layers"]
        if not self._functional:
            return sublayers(self)
        if self._layers is None:
            self._graph(False)
        return self._layers

    @layers.setter
    def layers(self, value) -> None:
        self.__dict__["layers"] = value

    def _all_layers(self) -> list:
        """Every layer, sublayers of custom layers included (whose penalties count)."""
        if not self._positional_keys():
            return sublayers(self)
        out = []
        for layer in self.layers:
            for lay in [layer] + sublayers(layer):
                if not any(lay is o for o in out):
                    out.append(lay)
        return out

    def state_dict(self) -> dict:
        """{key: Parameter} for every parameter (running statistics too). Functional and
        Sequential models key by layer position ("0_dense.W"), subclassed ones by attribute
        path ("encoder.0.W"): a freshly built model of the same architecture loads a save."""
        if not self._positional_keys():
            if self.built and not self._checked_params:
                self._graph(False)  # the first trace builds the layers
            return _tracing.attribute_parameters(self)
        if self.built and not all(layer.built for layer in self.layers):
            self._graph(False)  # a Sequential given input_shape: make the parameters now
        out = {}
        for i, layer in enumerate(self.layers):
            for k, p in layer.named_parameters().items():
                out[f"{i}_{type(layer).__name__.lower()}.{k}"] = p
        return out

    def _positional_keys(self) -> bool:
        return self._functional

    def _architecture_kind(self) -> str:
        """How model files describe this model (architecture.py)."""
        return "functional" if self._functional else "subclassed"

    def parameters(self) -> list:
        return list(self.state_dict().values())

    @property
    def params(self) -> list:
        return self.parameters()

    @property
    def trainable_params(self) -> list:
        return [p for p in self.params if p.trainable]

    def count_params(self) -> int:
        return int(sum(p.value.size for p in self.params))

    def summary(self, print_fn=print) -> str:
        from .summary import summary_text
        text = summary_text(self)
        if print_fn is not None:
            print_fn(text)
        return text

    # ---------------------------------------------------------------- compiling
    def compile(self, optimizer="adam", loss="cross_entropy", metrics=None, loss_weights=None, target=None,
                opt_level=2, check_numerics=False, dump_dir=None):
        """Choose optimiser, loss (one, or per output: a list or a dict by output name),
        loss_weights, metrics and target ("cpu" by default). Compiling the functions
        themselves happens on first use (see `compiled`)."""
        from .. import optim
        self.optimizer = optim.get(optimizer)
        self._loss_spec, self._metrics_spec, self._loss_weights = loss, metrics, loss_weights
        self.target = resolve_target(target)
        self.opt_level, self.check_numerics, self.dump_dir = opt_level, check_numerics, dump_dir
        self._reset_compiled()
        check_names(loss, metrics)
        if self.built:
            self._graph(False)  # build the layers now, so their parameters exist
            self._heads()        # a wrong output name is an error now
        return self

    def _heads(self) -> Heads:
        """The outputs' losses and metrics as compiled (compile() chose them)."""
        if not self._functional:
            self._graph(False)
        return Heads(self.name, self.output_names, self._loss_spec, self._loss_weights, self._metrics_spec)

    def _need_compiled(self):
        if self.optimizer is None:
            raise RuntimeError(f"{self.name}: call model.compile(optimizer, loss, ...) before fit/evaluate")

    def _compile(self, key, build):
        t0 = time.perf_counter()
        fn = build()
        self.compile_seconds[key[0]] = time.perf_counter() - t0
        self._fns[key] = fn
        return fn

    def compiled(self, which: str, y_kinds=None):
        """The compiled function "train", "evaluate" or "predict" (built on first use).
        y_kinds: per output, the targets' (dtype, shape without the batch axis);
        by default class ids."""
        if which not in ("train", "evaluate", "predict"):
            raise ValueError(f"no compiled function {which!r}; choose train, evaluate or predict")
        if which != "predict":
            self._need_compiled()
            if y_kinds is None:   # the class-id targets fit would pass: one compile serves both
                y_kinds = tuple(("int32", tuple(o.shape[1:-1])) for o in self._graph(False)[1])
        key = (which, None if which == "predict" else y_kinds)
        if key in self._fns:
            return self._fns[key]
        target = self.target if self.optimizer is not None else resolve_target(None)
        common = dict(target=target, opt_level=getattr(self, "opt_level", 2),
                      check_numerics=getattr(self, "check_numerics", False))
        if which == "predict":
            def build():
                xs, outs = self._graph(False)
                return ng_compile(xs, outs if len(outs) > 1 else outs[0], name="predict", **common)
        else:
            def build():
                xs, ts, scores, layer_updates = self.scored_graph(which == "train", y_kinds)
                if which == "evaluate":
                    return ng_compile(xs + ts, scores, name="evaluate", **common)
                ups = self.optimizer.minimize(scores[0], self.trainable_params)
                return ng_compile(xs + ts, scores, updates=self.with_layer_updates(ups, layer_updates),
                                  name="train_step", dump_dir=self.dump_dir, **common)
        return self._compile(key, build)

    def scored_graph(self, training: bool, y_kinds) -> tuple:
        """(input placeholders, target placeholders, scores in _score_names() order,
        the layers' state updates {parameter: new value}) in the given mode: what the
        training and evaluation steps are made of (the data-parallel step too)."""
        with collect_updates() as c:
            xs, outs = self._graph(training)
        ts = _tracing.targets_placeholders(outs, self.output_names, y_kinds)
        scores = self._heads().scores(outs, ts, [p for lay in self._all_layers() for p in lay.penalties()])
        return xs, ts, scores, dict(c.updates)

    def with_layer_updates(self, updates: dict, layer_updates: dict) -> dict:
        """The optimiser's updates plus the layers' own (running statistics); a parameter
        both would update is an error, not a silent choice."""
        for p, v in layer_updates.items():
            if p in updates:
                raise ValueError(f"{self.name}: parameter {p.name} is updated by the optimiser and a layer")
            updates[p] = v
        return updates

    def _score_names(self) -> list:
        return self._heads().score_names()

    # ---------------------------------------------------------------- data
    def _xs(self, X) -> list:
        if isinstance(X, dict):
            X = _tracing.by_input_name(self, X)
        xs = list(X) if isinstance(X, (list, tuple)) else [X]
        if not self.built:
            _tracing.set_specs_from_arrays(self, xs)
        if len(xs) != len(self.inputs):
            raise ValueError(f"{self.name}: {len(self.inputs)} input arrays expected, {len(xs)} given")
        out = []
        on_device = self._computes_on_device()
        for a, ph in zip(xs, self.inputs):
            if on_device and is_device_array(a):    # target="gpu": kept where it is
                _check_input_shape(self.name, ph, a)
                out.append(device_data.checked_input(self.name, ph, a))
                continue
            a = np.asarray(a)
            _check_input_shape(self.name, ph, a)
            if is_float(ph.dtype) and a.dtype != np.float32 and a.dtype.kind in "fiub":
                a = a.astype(np.float32)
            out.append(a)
        n = {len(a) for a in out}
        if len(n) != 1:
            raise ValueError(f"{self.name}: input arrays have different lengths {sorted(n)}")
        return out

    def _computes_on_device(self) -> bool:
        """Whether the compiled functions run on target="gpu" (they take device arrays)."""
        target = self.target if getattr(self, "optimizer", None) is not None else resolve_target(None)
        return target == "gpu"

    def _ys(self, y) -> tuple:
        """(target arrays in output order, their kinds: (dtype, shape without batch))."""
        names = self.output_names if self._functional else None
        if names is None:
            self._graph(False)
            names = self.output_names
        ys = _tracing.targets_in_order(self.name, y, names)
        arrays, kinds = [], []
        on_device = self._computes_on_device()
        for a, name in zip(ys, names):
            if on_device and is_device_array(a):    # target="gpu": kept where it is
                arrays.append(device_data.checked_target(self.name, name, a))
                kinds.append((device_data.dtype_name(a), tuple(int(s) for s in a.shape[1:])))
                continue
            a = np.asarray(a)
            if a.dtype.kind in "iub":
                a = a.astype(np.int32)
            elif a.dtype.kind == "f":
                a = a.astype(np.float32)
            else:
                raise ValueError(f"{self.name}: targets must be numbers, got dtype {a.dtype}")
            arrays.append(a)
            kinds.append((str(a.dtype), tuple(a.shape[1:])))
        return arrays, tuple(kinds)

    # ---------------------------------------------------------------- training
    def fit(self, X, y=None, epochs: int = 1, batch_size: int = 32, validation_data=None,
            validation_split: float = 0.0, shuffle: bool = True, callbacks=None, verbose: int = 1,
            seed: int | None = 0, steps_per_epoch: int | None = None, report=None,
            distributed: bool = False) -> dict:
        """Train; returns the history {"loss": [per epoch], "accuracy": [...], "val_loss": ...}
        (also kept as model.history). X, y: arrays (lists or dicts of them for several
        inputs or outputs), or X a generator / iterable of (x, y) batches and y None
        (a list or tuple too, when every item is an (x, y) pair: fitting.BatchSource).
        validation_split holds out the last fraction of X, y (before shuffling, as Keras).
        verbose=1 shows a progress bar on a terminal and one line per epoch otherwise,
        2 one line per epoch, 0 nothing. Each epoch's shuffle depends only on `seed`
        and the epoch's number over the model's life, so training in several fit calls
        (or after save and load_model) matches training in one. report="run.html" writes
        the training report there (nngraph/report/training.py). distributed=True:
        data-parallel over the processes of an MPI job, batch_size being the global
        batch (nngraph/nn/distributed_fit.py)."""
        from .fitting import fit
        if report is not None:
            from ..report.training import TrainingReport
            callbacks = [*(callbacks or []), TrainingReport(report)]
        if distributed:
            from .distributed_fit import fit_distributed
            fit = fit_distributed
        return fit(self, X, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                   validation_split=validation_split, shuffle=shuffle, callbacks=callbacks, verbose=verbose,
                   seed=seed, steps_per_epoch=steps_per_epoch)

    def evaluate(self, X, y=None, batch_size: int = 256, verbose: int = 0) -> dict:
        """{"loss": ..., metric: ...} over all of X (means weighted by batch size), inference mode.
        X may also be an iterable of (x, y) batches. On target="gpu", X and y may be device
        arrays (torch tensors), used where they are; NumPy data is moved to the device once
        (when it fits) and every batch is a slice of it there."""
        from .fitting import evaluate
        return evaluate(self, X, y, batch_size)

    def predict(self, X, batch_size: int = 256, verbose: int = 0):
        """The model's output for X in inference mode (logits unless the model ends in
        softmax or sigmoid); a list of arrays, in the order of the outputs, when there
        are several. On target="gpu", X may be device arrays (torch tensors): then the
        outputs are device tensors too; NumPy X is moved to the device once (when it
        fits), and the outputs come back as NumPy arrays."""
        xs = self._xs(X)
        fn = self.compiled("predict")
        n = len(xs[0])
        on_host = not any(map(is_device_array, xs))
        if self._computes_on_device():   # the inputs to the device once, not per batch
            xs = fn.to_device_if_fits(xs)
        parts = [fn(*[a[s:s + batch_size] for a in xs]) for s in range(0, n, batch_size)]
        if len(self.output_names) == 1:
            parts = [[p] for p in parts]
        outs = [_joined(fn, [p[i] for p in parts], o, on_host) for i, o in enumerate(self.outputs)]
        return outs[0] if len(self.output_names) == 1 else outs

    # ---------------------------------------------------------------- saving
    def save(self, path) -> None:
        """The whole model: weights, optimizer state and architecture (see model_io);
        `ng.nn.load_model(path)` rebuilds it. An unbuilt model is an error."""
        from .model_io import save_model
        save_model(self, path)

    def save_weights(self, path) -> None:
        """Only the parameter values (running statistics too), as ng.save writes them."""
        self._need_built("save_weights")
        saving.save(path, self.state_dict())

    def load(self, path) -> None:
        """Parameter values from a file that save() or save_weights() wrote; every
        parameter must be there with its shape. An unbuilt model builds from the
        shapes in the file, or says what it needs."""
        from .model_io import load_weights
        load_weights(self, path)

    load_weights = load

    def _need_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(f"{self.name}: {what} needs a built model (its parameters do not exist yet); "
                             "call fit, predict or build(input_shape) first")


def _check_input_shape(model_name: str, ph: Tensor, a) -> None:
    """The data's per-example shape against the model's input, in the user's terms."""
    want = tuple(ph.shape[1:])
    fits = a.ndim == len(want) + 1 and all(not isinstance(w, int) or w == g for w, g in zip(want, a.shape[1:]))
    if not fits:
        raise ValueError(f"{model_name}: input '{ph.name}' takes examples of shape {want} (batches "
                         f"({', '.join(map(str, ph.shape))})), got an array of shape {tuple(int(s) for s in a.shape)}")


def _joined(fn, parts: list, output: Tensor, on_host: bool):
    """One output's batches joined where they were computed (device outputs of device
    inputs stay on the device); NumPy when the caller's inputs were NumPy arrays."""
    if not parts:
        return np.zeros((0,) + _static(output), np.float32)
    out = fn.concatenate(parts)
    return fn.to_host(out) if on_host else out


def _static(t: Tensor) -> tuple:
    return tuple(s if isinstance(s, int) else 0 for s in t.shape[1:])


def ng_compile(*args, **kwargs):
    """ng.compile, looked up when called (so wrappers of ng.compile apply)."""
    import nngraph
    return nngraph.compile(*args, **kwargs)


__all__ = ["Model", "resolve_target", "Input"]
