"""What a module or layer holds, found the way PyTorch finds it: every attribute
that is a layer, a model, a parameter, or a list/tuple/dict of them (nested), in the
order the attributes were assigned. Keys are attribute paths ("encoder.0.W"), so a
freshly built object of the same class finds the same keys when it loads a save."""
from __future__ import annotations

from ..node import Parameter

# attributes that hold a layer's or a model's own bookkeeping, never user state
_OWN = frozenset({"params", "updates", "regularizers", "inputs", "_inputs", "optimizer", "history",
                  "_fns", "_layers", "_seq", "_outputs", "_init_args", "metrics", "loss_fns", "step_seconds",
                  "compile_seconds", "output_names", "_loss_spec", "_metrics_spec", "_loss_weights",
                  "_input_specs", "_trainer"})


def _is_owner(obj) -> bool:
    """Layers and models (they say so with the class attribute `_holds_parameters`)."""
    return getattr(type(obj), "_holds_parameters", False)


def _attributes(obj):
    skip = _OWN | set(getattr(obj, "_base_attrs", ()))
    return [(k, v) for k, v in vars(obj).items() if k not in skip]


def _walk(prefix: str, value, seen: set, visit) -> None:
    if id(value) in seen:
        return
    if isinstance(value, Parameter):
        seen.add(id(value))
        visit("param", prefix, value)
    elif _is_owner(value):
        seen.add(id(value))
        visit("owner", prefix, value)
        own = vars(value).get("params")  # a layer's own parameters (a model's .params is derived)
        for k, p in (own.items() if isinstance(own, dict) else ()):
            _walk(f"{prefix}.{k}" if prefix else k, p, seen, visit)
        positional = getattr(value, "_positional_keys", None)
        if positional is not None and positional():  # a Sequential or functional model held by another
            for i, layer in enumerate(value.layers):
                key = f"{i}_{type(layer).__name__.lower()}"
                _walk(f"{prefix}.{key}" if prefix else key, layer, seen, visit)
            return
        for k, v in _attributes(value):
            _walk(f"{prefix}.{k}" if prefix else k, v, seen, visit)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _walk(f"{prefix}.{i}", v, seen, visit)
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(f"{prefix}.{k}", v, seen, visit)


def named_parameters(root) -> dict:
    """{path: Parameter} for every parameter `root` holds (its own first)."""
    out: dict = {}

    def visit(kind, path, v):
        if kind == "param":
            out[path] = v
    _walk("", root, set(), visit)
    return out


def sublayers(root) -> list:
    """Every layer `root` holds, at any depth, in attribute order (not root itself)."""
    out: list = []

    def visit(kind, path, v):
        if kind == "owner" and v is not root and getattr(type(v), "_is_layer", False):
            out.append(v)
    _walk("", root, set(), visit)
    return out
