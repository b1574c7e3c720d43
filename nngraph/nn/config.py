"""Objects as data for model files: a layer, an optimiser, a schedule or a
regulariser becomes {"class": name, ...} with its constructor arguments in JSON,
and back. Classes are looked up by name among ng.nn's layers, ng.optim and the
caller's custom_objects, never imported by a name read from a file (that would
run code the file chose, as pickle does).

Layers remember the arguments they were made with (Layer.__new__); optimisers and
schedules keep each constructor argument as an attribute of the same name."""
from __future__ import annotations

import inspect

import numpy as np

from ..types import Dim


class ConfigError(ValueError):
    """Something in a model cannot be written as data, or a file names an unknown class."""


def encode(value, where: str):
    """A JSON value for a constructor argument or an op attribute."""
    from .regularizers import Regularizer
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)):
        items = [encode(v, where) for v in value]
        return {"tuple": items} if isinstance(value, tuple) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode(v, where) for k, v in value.items()}}
    if isinstance(value, Dim):
        return {"dim": value.name}
    if isinstance(value, Regularizer):
        return {"regularizer": value.get_config()}
    raise ConfigError(f"{where}: cannot save {value!r} ({type(value).__name__}) as data; "
                      "pass names and numbers (e.g. activation='relu') so that the model can be saved")


def decode(value):
    from .regularizers import Regularizer
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "tuple" in value:
            return tuple(decode(v) for v in value["tuple"])
        if "dict" in value:
            return {k: decode(v) for k, v in value["dict"].items()}
        if "dim" in value:
            return Dim(value["dim"])
        if "regularizer" in value:
            return Regularizer(**value["regularizer"])
        raise ConfigError(f"unknown value in a model file: {value!r}")
    return value


def _bound(cls, args, kwargs) -> dict:
    """The constructor arguments by parameter name, as the call bound them."""
    try:
        return inspect.signature(cls.__init__).bind_partial(None, *args, **kwargs).arguments
    except TypeError:
        return dict(kwargs)


def _takes(cls, arg: str) -> bool:
    params = inspect.signature(cls.__init__).parameters
    return arg in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def constructor_config(obj, where: str) -> dict:
    """{"class", "args", "kwargs"} from the arguments obj was made with (Layer/Model
    __new__ records them); the layer's name is kept so outputs keep their names."""
    args, kwargs = getattr(obj, "_init_args", ((), {}))
    kwargs = dict(kwargs)
    if getattr(obj, "name", None) and "name" not in _bound(type(obj), args, kwargs) and _takes(type(obj), "name"):
        kwargs["name"] = obj.name
    return {"class": type(obj).__name__,
            "args": [encode(a, f"{where} argument {i}") for i, a in enumerate(args)],
            "kwargs": {k: encode(v, f"{where} argument {k}") for k, v in kwargs.items()}}


def attribute_config(obj) -> dict:
    """{"class", "kwargs"} for an optimiser or schedule: each constructor argument read
    back from the attribute of the same name (a schedule as its own config)."""
    from ..optim.schedules import Schedule
    kwargs = {}
    for p in inspect.signature(type(obj).__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name == "lr" and getattr(obj, "schedule", None) is not None:
            kwargs["lr"] = {"schedule": attribute_config(obj.schedule)}
            continue
        if p.name == "lr" and hasattr(obj, "lr") and not isinstance(obj, Schedule):
            kwargs["lr"] = float(np.asarray(obj.lr.value))
            continue
        if not hasattr(obj, p.name):
            raise ConfigError(f"{type(obj).__name__}: cannot save its argument {p.name!r} (no attribute of that name)")
        kwargs[p.name] = encode(getattr(obj, p.name), f"{type(obj).__name__}.{p.name}")
    for extra in ("clipnorm", "clipvalue"):
        if getattr(obj, extra, None) is not None:
            kwargs[extra] = float(getattr(obj, extra))
    return {"class": type(obj).__name__, "kwargs": kwargs}


def known_classes(custom_objects=None) -> dict:
    """Name -> class: ng.nn's layers and models, ng.optim's optimisers and schedules,
    then custom_objects."""
    import nngraph.nn as nn
    import nngraph.optim as optim
    out = {}
    for mod in (nn, optim):
        for k, v in vars(mod).items():
            if isinstance(v, type):
                out[k] = v
    out.update(custom_objects or {})
    return out


def lookup(name: str, classes: dict, what: str):
    if name not in classes:
        raise ConfigError(f"the model file names {what} class {name!r}, which is not an ng.nn/ng.optim class; "
                          f"pass load_model(path, custom_objects={{{name!r}: {name}}})")
    return classes[name]


def build(config: dict, classes: dict, what: str):
    """The object a config describes."""
    cls = lookup(config["class"], classes, what)
    kwargs = {k: build(v["schedule"], classes, "schedule") if isinstance(v, dict) and "schedule" in v
              else decode(v) for k, v in config.get("kwargs", {}).items()}
    return cls(*[decode(a) for a in config.get("args", [])], **kwargs)
