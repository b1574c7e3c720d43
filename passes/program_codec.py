"""A Program as JSON plus raw arrays, and back: what the compile cache stores so that a
hit needs no passes, no lowering and no code generation (runtime/compile_cache.py).

No pickle. The encoding is generic over the Program's own dataclasses (Buffer,
kernels, stages, instructions, and any kernel type a later pass adds), so a new
field or kernel class is stored without a change here. Decoding builds only
dataclasses defined in this project's `passes` package and `nngraph.types` (Dim),
from plain JSON values: a damaged or foreign entry cannot make it run anything.

Values: None, bool, int, float (NaN and infinities included), str, list, tuple,
dict, NumPy scalars, NumPy arrays (kept out of the JSON as raw bytes in `blobs`,
referenced by index) and the dataclasses above. `Program.nodes` (references into the
graph) is not stored: a hit rebuilds it on first use (runtime/compile_cache.py).
Anything else raises CodecError, and the caller stores nothing.
"""
from __future__ import annotations

import dataclasses
import importlib

import numpy as np

from .program import Program

# modules whose dataclasses a stored Program may name: the passes package, and Dim
ALLOWED_PACKAGE = "passes."
ALLOWED_MODULES = ("nngraph.types",)
NOT_STORED = ("nodes",)   # Program fields rebuilt on use, not stored


class CodecError(ValueError):
    """A Program holds a value this codec does not store, or an entry is malformed."""


def encode_program(program: Program) -> tuple[dict, list]:
    """(JSON-able dict, list of contiguous arrays it refers to by index)."""
    blobs: list = []
    fields = {f.name: _enc(getattr(program, f.name), blobs) for f in dataclasses.fields(program)
              if f.name not in NOT_STORED}
    return {"program": fields}, blobs


def decode_program(data: dict, blobs: list) -> Program:
    """The Program `encode_program` described (its `nodes` None)."""
    try:
        fields = {k: _dec(v, blobs) for k, v in data["program"].items()}
        return Program(**fields)
    except CodecError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CodecError(f"malformed stored Program: {type(e).__name__}: {e}") from None


def _enc(v, blobs):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, float)):
        return v                                  # JSON floats are repr: exact; NaN, inf too
    if isinstance(v, np.ndarray):
        blobs.append(np.ascontiguousarray(v))
        return {"a": len(blobs) - 1, "dtype": v.dtype.str, "shape": list(v.shape)}
    if isinstance(v, np.generic):
        return {"np": v.dtype.str, "v": _enc(v.item(), blobs)}
    if isinstance(v, list):
        return [_enc(x, blobs) for x in v]
    if isinstance(v, tuple):
        return {"t": [_enc(x, blobs) for x in v]}
    if isinstance(v, dict):
        return {"d": [[_enc(k, blobs), _enc(x, blobs)] for k, x in v.items()]}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        cls = type(v)
        if not _allowed(cls.__module__):
            raise CodecError(f"cannot store a {cls.__module__}.{cls.__qualname__}")
        return {"dc": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _enc(getattr(v, f.name), blobs) for f in dataclasses.fields(v)}}
    raise CodecError(f"cannot store a value of type {type(v).__name__}")


def _dec(v, blobs):
    if not isinstance(v, (dict, list)):
        return v
    if isinstance(v, list):
        return [_dec(x, blobs) for x in v]
    if "t" in v:
        return tuple(_dec(x, blobs) for x in v["t"])
    if "d" in v:
        return {_dec(k, blobs): _dec(x, blobs) for k, x in v["d"]}
    if "a" in v:
        a = blobs[v["a"]]
        return a.view(np.dtype(v["dtype"])).reshape(tuple(v["shape"]))
    if "np" in v:
        return np.dtype(v["np"]).type(_dec(v["v"], blobs))
    if "dc" in v:
        cls = _dataclass(v["dc"])
        return cls(**{k: _dec(x, blobs) for k, x in v["fields"].items()})
    raise CodecError(f"malformed stored value {sorted(v)}")


def _allowed(module: str) -> bool:
    return module.startswith(ALLOWED_PACKAGE) or module in ALLOWED_MODULES


_classes: dict = {}


def _dataclass(name: str):
    """The dataclass `module:qualname` names, only from the allowed modules."""
    cls = _classes.get(name)
    if cls is not None:
        return cls
    module, _, qual = name.partition(":")
    if not _allowed(module) or "." in qual:
        raise CodecError(f"a stored Program names {name!r}, which is not one of nngraph's own classes")
    try:
        cls = getattr(importlib.import_module(module), qual)
    except (ImportError, AttributeError):
        raise CodecError(f"a stored Program names {name!r}, which does not exist") from None
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise CodecError(f"a stored Program names {name!r}, which is not a data class")
    _classes[name] = cls
    return cls
