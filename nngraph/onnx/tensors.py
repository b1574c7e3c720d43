"""TensorProto -> ndarray with the element type checked, and names made identifiers."""
from __future__ import annotations

import re

import numpy as np

from .dtypes import to_nngraph


def to_array(proto, what: str, error) -> np.ndarray:
    """The array of a TensorProto of a supported element type (else `error` naming it)."""
    from onnx import numpy_helper
    dt = to_nngraph(proto.data_type, what, error)
    try:
        arr = numpy_helper.to_array(proto)
    except Exception as e:  # a truncated or inconsistent tensor
        raise error(f"{what}: cannot read the tensor data ({e})") from None
    return np.array(arr, dtype=np.dtype(dt), order="C")  # (ascontiguousarray would make 0-d arrays 1-d)


def identifier(name: str, taken: set) -> str:
    """A Python-identifier version of an ONNX name (placeholders are called by it),
    unique among `taken`."""
    base = re.sub(r"\W", "_", name) or "x"
    if not (base[0].isalpha() or base[0] == "_"):
        base = "x_" + base
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out
