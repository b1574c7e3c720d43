"""Whole-model files: model.save(path) and ng.nn.load_model(path).

One .npz (written atomically by ng.save's writer, read with allow_pickle=False):
- "model.json": the architecture (architecture.py), the compile settings
  (optimizer as data, loss and metric names, target), epochs_done, format version;
- "weights/<key>": every parameter by its state_dict key;
- "optimizer/lr", "optimizer/iterations", "optimizer/<kind>/<weight key>": the
  optimiser's state, slots keyed by the weight they belong to;
- "rng/counter": the process-wide random-op counter (ops/random.step_counter) at
  save time, which keys the dropout masks of the next step.

load_model rebuilds the model, compiles it as saved and puts every value back,
the random-op counter included (it is process-wide: loading sets it for every
model of the process), so the next fit continues exactly as the saved model would
have (same parameters and dropout masks after the next epoch, bit for bit on the
same target).
"""
from __future__ import annotations

import json
import os

import numpy as np

from .. import saving
from ..errors import ShapeError
from ..ops import random as rnd
from . import architecture
from . import config as cfg

FORMAT = "nngraph.model"
VERSION = 1
CONFIG_KEY = "model.json"
RNG_COUNTER_KEY = "rng/counter"


def _loss_config(spec, what: str):
    if spec is None or isinstance(spec, (str, int, float)):
        return spec
    if isinstance(spec, (list, tuple)):
        return [_loss_config(s, what) for s in spec]
    if isinstance(spec, dict):
        return {"dict": {k: _loss_config(v, what) for k, v in spec.items()}}
    name = getattr(spec, "__name__", None)
    if name is None:
        raise cfg.ConfigError(f"cannot save the {what} {spec!r}: give it a __name__ (a def function)")
    return {"function": name}


def _loss_from_config(spec, custom_objects: dict, what: str):
    if isinstance(spec, list):
        return [_loss_from_config(s, custom_objects, what) for s in spec]
    if isinstance(spec, dict) and "dict" in spec:
        return {k: _loss_from_config(v, custom_objects, what) for k, v in spec["dict"].items()}
    if isinstance(spec, dict) and "function" in spec:
        name = spec["function"]
        if name not in custom_objects:
            raise cfg.ConfigError(f"the model was compiled with the {what} function {name!r}; pass "
                                  f"load_model(path, custom_objects={{{name!r}: {name}}})")
        return custom_objects[name]
    return spec


def _optimizer_state(model, arrays: dict) -> None:
    opt = model.optimizer
    keys = {id(p): k for k, p in model.state_dict().items()}
    arrays["optimizer/lr"] = np.asarray(opt.lr.value)
    arrays["optimizer/iterations"] = np.asarray(opt.iterations.value)
    for (pid, kind), (p, slot) in opt._slots.items():
        if pid in keys:
            arrays[f"optimizer/{kind}/{keys[pid]}"] = np.asarray(slot.value)


def save_model(model, path) -> None:
    """Model.save: the whole model in one atomic .npz."""
    model._need_built("save")
    arrays: dict = {}
    arch = architecture.describe(model, arrays)
    for k, p in model.state_dict().items():
        arrays[f"weights/{k}"] = np.asarray(p.value)
    meta = {"format": FORMAT, "version": VERSION, "architecture": arch, "epochs_done": int(model.epochs_done)}
    if model.optimizer is not None:
        meta["compile"] = {"optimizer": cfg.attribute_config(model.optimizer),
                           "loss": _loss_config(model._loss_spec, "loss"),
                           "metrics": _loss_config(model._metrics_spec, "metric"),
                           "loss_weights": _loss_config(model._loss_weights, "loss weight"),
                           "target": model.target, "opt_level": model.opt_level}
        _optimizer_state(model, arrays)
    arrays[RNG_COUNTER_KEY] = np.asarray(rnd.step_counter().value)
    arrays[CONFIG_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    saving.save_arrays(path, arrays)


def _read(path) -> tuple:
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as f:
        if not hasattr(f, "files"):
            raise ValueError(f"load_model: {path} holds a single array, not a model file")
        arrays = {k: f[k] for k in f.files}
    meta = None
    if CONFIG_KEY in arrays:
        meta = json.loads(arrays.pop(CONFIG_KEY).tobytes().decode("utf-8"))
        if meta.get("format") != FORMAT or meta.get("version", 0) > VERSION:
            raise ValueError(f"load_model: {path} is not an nngraph model file of version <= {VERSION}")
    return meta, arrays


def _put_weights(model, arrays: dict, path) -> None:
    """Every parameter from the file (checked all first, then set)."""
    params = model.state_dict()
    prefix = "weights/" if any(k.startswith("weights/") for k in arrays) else ""
    new = {}
    for k, p in params.items():
        a = arrays.get(prefix + k)
        if a is None:
            have = sorted(x[len(prefix):] for x in arrays if x.startswith(prefix) and "/" not in x[len(prefix):])
            raise saving.MissingParameterError(f"load: parameter {k!r} ({p.type}) is missing from {path}; "
                                               f"the file has {', '.join(have) or 'no weights'}")
        if a.shape != tuple(p.shape) or a.dtype != p.value.dtype:
            raise ShapeError(f"load: parameter {k!r} expects {p.type} ({p.value.dtype}), {path} has "
                                    f"{a.dtype} of shape {list(a.shape)}")
        new[k] = a
    for k, a in new.items():
        params[k].value = a


def _put_optimizer_state(model, arrays: dict) -> None:
    opt = model.optimizer
    opt.lr.value = arrays["optimizer/lr"]
    opt.iterations.value = arrays["optimizer/iterations"]
    params = model.state_dict()
    for key, a in arrays.items():
        parts = key.split("/", 2)
        if parts[0] == "optimizer" and len(parts) == 3:
            opt.slot(params[parts[2]], parts[1]).value = a


def _put_rng_counter(arrays: dict) -> None:
    """Set the process-wide random-op counter to the saved one (files written before
    it was saved leave it as it is), so the next step draws the masks it would have."""
    saved = arrays.get(RNG_COUNTER_KEY)
    if saved is not None:
        counter = rnd.step_counter()
        counter.value = np.asarray(saved, dtype=counter.value.dtype).reshape(())


def load_model(path, custom_objects: dict | None = None, compile: bool = True, target: str | None = None):
    """The model that model.save(path) wrote, built, with its weights, its optimiser
    (state included) and compile settings: fit continues where the saved model
    stopped. Sets the process's random-op counter (dropout masks) to the saved one. custom_objects: {name: class or function} for a subclassed model's class,
    custom layers and loss functions (code is never read from the file)."""
    meta, arrays = _read(path)
    if meta is None:
        raise ValueError(f"load_model: {path} holds weights only (ng.save or save_weights); build the model "
                         "in code and call model.load(path)")
    classes = cfg.known_classes(custom_objects)
    model = architecture.rebuild(meta["architecture"], arrays, classes)
    _put_weights(model, arrays, path)
    _put_rng_counter(arrays)
    model.epochs_done = int(meta.get("epochs_done", 0))
    c = meta.get("compile")
    if compile and c is not None:
        objects = dict(custom_objects or {})
        model.compile(optimizer=cfg.build(c["optimizer"], classes, "optimizer"),
                      loss=_loss_from_config(c["loss"], objects, "loss"),
                      metrics=_loss_from_config(c["metrics"], objects, "metric"),
                      loss_weights=_loss_from_config(c["loss_weights"], objects, "loss weight"),
                      target=target or c["target"], opt_level=c["opt_level"])
        _put_optimizer_state(model, arrays)
    return model


def load_weights(model, path) -> None:
    """Model.load: weights from a model file or a weights file into `model`. An unbuilt
    model takes its input shapes from a model file, or raises saying what it needs."""
    meta, arrays = _read(path)
    if not model.built:
        arch = (meta or {}).get("architecture", {})
        if arch.get("kind") == "sequential" and hasattr(model, "input_shape"):
            model.build([None] + list(arch["input_shape"]))
        elif arch.get("kind") == "subclassed":
            model._input_specs = [(tuple(i["shape"]), i["dtype"], i["name"]) for i in arch["inputs"]]
            model._inputs = None
        else:
            raise ValueError(f"{model.name}: load needs a built model (its parameters do not exist yet) and "
                             f"{path} does not say the input shape; call model.build(input_shape) first, or "
                             "ng.nn.load_model(path) for a file that model.save wrote")
    _put_weights(model, arrays, path)
