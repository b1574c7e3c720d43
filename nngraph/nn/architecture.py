"""A model's architecture as data (JSON), and the model rebuilt from it.

- Sequential: the layers' configs and the input shape.
- Functional Model: the layers' configs and the graph between inputs and outputs
  as a list of nodes: an input placeholder, a layer call (layer number, input node),
  or a plain op between layers (op name, input nodes, attributes; constant arrays
  go to the file's arrays).
- Subclassed (Module): the class name and its constructor arguments; the class is
  Python code, so load_model needs it in custom_objects.
"""
from __future__ import annotations

import numpy as np

from ..node import ConstValue, Parameter, make
from . import config as cfg
from .layers import CALLS, Input, call_inputs


def _layers_config(layers) -> list:
    return [cfg.constructor_config(layer, f"layer {layer.name}") for layer in layers]


def describe(model, arrays: dict) -> dict:
    """The architecture of `model`; constant arrays of a functional graph go to `arrays`."""
    kind = model._architecture_kind()
    if kind == "sequential":
        return {"kind": "sequential", "name": model.name, "input_shape": list(model.input_shape),
                "input_dtype": model.input_dtype, "layers": _layers_config(model.layers)}
    if kind == "functional":
        return _describe_functional(model, arrays)
    return {"kind": "subclassed", "model": cfg.constructor_config(model, f"model {model.name}"),
            "inputs": [{"shape": list(s), "dtype": d, "name": n} for s, d, n in model._input_specs]}


def _encode_attr(value, arrays: dict, where: str):
    if isinstance(value, ConstValue):
        key = f"constants/{len(arrays)}"
        arrays[key] = np.asarray(value.array)
        return {"array": key}
    if isinstance(value, tuple):
        return {"tuple": [_encode_attr(v, arrays, where) for v in value]}
    return cfg.encode(value, where)


def _describe_functional(model, arrays: dict) -> dict:
    layers = model.layers
    index = {id(t): i for i, t in enumerate(model._inputs)}
    nodes, ids = [], {}

    def go(t) -> int:  # the layer-level graph: a layer call hides the ops inside the layer
        if id(t) in ids:
            return ids[id(t)]
        call = CALLS.get(t)
        if id(t) in index:
            node = {"input": index[id(t)], "shape": [cfg.encode(s, "input") for s in t.shape[1:]],
                    "batch": str(t.shape[0]), "dtype": t.dtype, "name": t.name}
        elif call is not None:
            layer, x = call
            node = {"layer": next(i for i, lay in enumerate(layers) if lay is layer),
                    "x": [go(i) for i in call_inputs(x)] if isinstance(x, tuple) else go(x)}
        elif isinstance(t, Parameter):
            raise cfg.ConfigError(f"{model.name}: parameter {t.name} is used outside a layer, so the "
                                  "architecture cannot be saved as data; wrap it in a layer")
        else:
            node = {"op": t.op, "inputs": [go(i) for i in t.inputs], "name": t.name,
                    "attrs": {k: _encode_attr(v, arrays, f"op {t.op} attribute {k}") for k, v in t.attrs.items()}}
        ids[id(t)] = len(nodes)
        nodes.append(node)
        return ids[id(t)]

    outputs = [go(o) for o in model._outputs]
    return {"kind": "functional", "name": model.name, "layers": _layers_config(layers), "nodes": nodes,
            "outputs": outputs, "output_names": list(model.output_names)}


def _decode_attr(value, arrays):
    if isinstance(value, dict) and "array" in value:
        return np.asarray(arrays[value["array"]])
    if isinstance(value, dict) and "tuple" in value:
        return tuple(_decode_attr(v, arrays) for v in value["tuple"])
    return cfg.decode(value)


def rebuild(arch: dict, arrays, classes: dict):
    """A model of the architecture `arch` (built, with fresh parameter values); `classes`
    (config.known_classes) holds Sequential and Model with the layers."""
    Model, Sequential = classes["Model"], classes["Sequential"]
    kind = arch["kind"]
    if kind == "sequential":
        layers = [cfg.build(c, classes, "layer") for c in arch["layers"]]
        model = Sequential(layers, input_shape=arch["input_shape"], name=arch["name"],
                           input_dtype=arch["input_dtype"])
        model._graph(False)
        return model
    if kind == "subclassed":
        model = cfg.build(arch["model"], classes, "model")
        model._input_specs = [(tuple(i["shape"]), i["dtype"], i["name"]) for i in arch["inputs"]]
        model._inputs = None
        model._graph(False)
        return model
    if kind != "functional":
        raise cfg.ConfigError(f"unknown model kind {kind!r} in the file")
    layers = [cfg.build(c, classes, "layer") for c in arch["layers"]]
    made, inputs = [], {}
    for node in arch["nodes"]:
        if "input" in node:
            t = Input(tuple(cfg.decode(s) for s in node["shape"]), name=node["name"], dtype=node["dtype"],
                      batch=node["batch"])
            inputs[node["input"]] = t
        elif "layer" in node:
            xs = node["x"] if isinstance(node["x"], list) else [node["x"]]
            t = layers[node["layer"]](*[made[i] for i in xs])
        else:
            attrs = {k: _decode_attr(v, arrays) for k, v in node["attrs"].items()}
            t = make(node["op"], [made[i] for i in node["inputs"]], name=node["name"], **attrs)
        made.append(t)
    model = Model([inputs[i] for i in sorted(inputs)], [made[i] for i in arch["outputs"]], name=arch["name"])
    model.output_names = list(arch["output_names"])
    return model
