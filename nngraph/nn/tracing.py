"""How Model traces a graph: a functional model replays its layer calls, a
subclassed one (module.py) runs its forward; the outputs' names and targets
placeholders; inputs from build(input_shape) or the first data; the warning when a
traced forward reads no trainable parameter or parameters no attribute holds."""
from __future__ import annotations

import inspect
import warnings

from ..graph import toposort
from ..node import Parameter, Tensor, make
from .layers import CALLS, Input, _snake, call_inputs
from .tree import named_parameters


def default_name(model) -> str:
    return _snake(type(model).__name__)


# ---------------------------------------------------------------- outputs and targets
def named_outputs(outputs) -> tuple:
    """([names], [tensors]) of a tensor, a list/tuple or a dict of output tensors. Names:
    the dict's keys, else the name of the layer that made each output (Keras's rule),
    else the tensor's name, else output_<i>."""
    if isinstance(outputs, dict):
        names, outs = [str(k) for k in outputs], list(outputs.values())
    else:
        outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        names = []
        for i, t in enumerate(outs):
            call = CALLS.get(t) if isinstance(t, Tensor) else None
            n = call[0].name if call is not None else (t.name if isinstance(t, Tensor) and t.name else None)
            names.append(n if n and n not in names else f"output_{i + 1}")
    for n, t in zip(names, outs):
        if not isinstance(t, Tensor):
            raise TypeError(f"model output {n!r} must be a tensor, got {type(t).__name__}")
    if len(outs) == 1 and not isinstance(outputs, dict):
        names = ["output"] if names == ["output_1"] else names
    return names, outs


def targets_in_order(model_name: str, y, names: list) -> list:
    """The target arrays in output order, from one array, a list or a dict by output name."""
    if isinstance(y, dict):
        missing = [n for n in names if n not in y]
        unknown = [k for k in y if k not in names]
        if missing or unknown:
            raise ValueError(f"{model_name}: targets are keyed by output name ({', '.join(names)}); "
                             f"missing {missing}, unknown {unknown}")
        return [y[n] for n in names]
    ys = list(y) if isinstance(y, (list, tuple)) and len(names) > 1 else [y]
    if len(ys) != len(names):
        raise ValueError(f"{model_name}: {len(names)} target arrays expected (outputs {', '.join(names)}), "
                         f"{len(ys)} given")
    return ys


def targets_placeholders(outs: list, names: list, kinds) -> list:
    """One targets placeholder per output, batch size shared with it. kinds: per output
    (dtype, shape without batch), None for class ids (the output's shape less its last axis)."""
    from ..api import placeholder
    if kinds is None or (len(kinds) == 2 and isinstance(kinds[0], str)):
        kinds = [kinds] * len(outs)
    out = []
    for o, n, k in zip(outs, names, kinds):
        dtype, shape = k if k is not None else ("int32", tuple(o.shape[1:-1]))
        tname = "targets" if len(outs) == 1 else f"targets_{n}"
        out.append(placeholder((o.shape[0],) + tuple(shape), dtype, name=tname))
    return out


# ---------------------------------------------------------------- inputs
def placeholders(model) -> list:
    if model._input_specs is None:
        raise ValueError(f"{model.name}: not built yet; call fit/predict with data or "
                         "model.build(input_shape) (e.g. build((None, 64)))")
    names = _forward_arg_names(model)
    return [Input(shape, name=n or names[i] if i < len(names) else f"x{i}", dtype=dtype)
            for i, (shape, dtype, n) in enumerate(model._input_specs)]


def user_forward(model):
    """The subclass's forward (or Keras's call), bound; None if it has neither
    (Model.forward, the graph in one mode, does not count)."""
    fn = getattr(model, "forward", None)
    if fn is None or getattr(fn, "_graph_alias", False):
        fn = getattr(model, "call", None)
    return fn


def _forward_arg_names(model) -> list:
    fn = user_forward(model)
    if fn is None:
        return []
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "training"]


def set_specs_from_shapes(model, input_shape) -> None:
    shapes = input_shape if isinstance(input_shape, list) else [input_shape]
    model._input_specs = [(tuple(int(s) for s in tuple(sh)[1:]), "float32", None) for sh in shapes]
    model._inputs = None


def set_specs_from_arrays(model, arrays: list) -> None:
    """A subclassed model builds for the first data it sees: float data -> float32
    inputs, integer data (token ids) -> int32."""
    import numpy as np
    specs = []
    for a in arrays:
        a = np.asarray(a)
        specs.append((tuple(a.shape[1:]), "int32" if a.dtype.kind in "iu" else "float32", None))
    model._input_specs, model._inputs = specs, None


def by_input_name(model, X: dict) -> list:
    names = [i.name for i in model.inputs]
    missing = [n for n in names if n not in X]
    if missing:
        raise ValueError(f"{model.name}: inputs are keyed by name ({', '.join(names)}); missing {missing}")
    return [X[n] for n in names]


# ---------------------------------------------------------------- tracing
def run_forward(model, xs, training: bool):
    """Call the subclass's forward (or call), passing training if it takes it."""
    fn = user_forward(model)
    if fn is None:
        raise TypeError(f"{type(model).__name__}: a subclassed model needs forward(self, x, training=False) "
                        "(or call); for a model from tensors use ng.nn.Model(inputs, outputs)")
    params = inspect.signature(fn).parameters
    takes = "training" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
    return fn(*xs, training=training) if takes else fn(*xs)


def replay(model, memo: dict, training: bool) -> tuple:
    """A functional model's outputs rebuilt from `memo` (id(input) -> tensor) by calling
    its layers again in the given mode; also the layers in call order."""
    order = []

    def go(t):
        r = memo.get(id(t))
        if r is not None:
            return r
        call = CALLS.get(t)
        if call is not None:
            layer, x = call
            r = layer(*[go(i) for i in call_inputs(x)], training=training)
            if not any(layer is o for o in order):
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

    for t in toposort(list(model._outputs)):  # inputs first: no deep recursion
        go(t)
    return [go(o) for o in model._outputs], order


def attribute_parameters(model) -> dict:
    return named_parameters(model)


def check_parameters_used(model, outs: list) -> None:
    """Warn when the traced forward trains nothing, or reads parameters that no
    attribute holds (they would not be saved, and are remade on every trace)."""
    used = [n for n in toposort(outs) if isinstance(n, Parameter)]
    known = {id(p) for p in named_parameters(model).values()}
    if not any(p.trainable for p in used):
        warnings.warn(f"{model.name}: forward uses no trainable parameter, so fit will train nothing; assign "
                      "layers (or ng.parameter values) to attributes in __init__, e.g. self.fc = ng.nn.Dense(10), "
                      "and call them in forward", UserWarning, stacklevel=4)
    stray = [p.name or "?" for p in used if id(p) not in known]
    if stray:
        warnings.warn(f"{model.name}: forward reads parameters no attribute holds ({', '.join(stray[:5])}): "
                      "layers made inside forward are new on every call and are neither trained nor saved; "
                      "make them in __init__", UserWarning, stacklevel=4)
