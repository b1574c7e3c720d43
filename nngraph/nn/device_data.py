"""Data already on the device, for models compiled for target="gpu": fit, evaluate and
predict take device arrays (PyTorch tensors, or any DLPack-capable array that is not
NumPy's) as they are, checked like NumPy arrays but never copied to the host; NumPy data
is moved to the device once per call when it fits (fitting.ArraySource.place_on).

Why the checks are duck-typed here: the nn library does not import PyTorch (an optional
dependency of target="gpu" only); a device array answers `shape` and `dtype`, and its
dtype prints as NumPy's does ("float32") or as PyTorch's ("torch.float32"). The compiled
function (runtime/gpu_arrays.py) checks the device itself.
"""
from __future__ import annotations

import numpy as np

from ..types import is_float


def is_device_array(a) -> bool:
    """A torch tensor or another DLPack-capable array that is not a NumPy array."""
    return not isinstance(a, (np.ndarray, np.generic)) and hasattr(a, "__dlpack__")


def dtype_name(a) -> str:
    """A device array's dtype as NumPy names it ("float32" for torch.float32)."""
    return str(a.dtype).replace("torch.", "")


def checked_input(model_name: str, ph, a):
    """Device array `a` for input placeholder `ph`: the model's dtype (float32 for a float
    input), else a ValueError naming the input, the dtype it takes and the one given (a
    device array is converted by its owner, on the device, not copied here)."""
    want = "float32" if is_float(ph.dtype) else ph.dtype
    given = dtype_name(a)
    if given != want:
        raise ValueError(f"{model_name}: input '{ph.name}' takes {want} examples; got a device array "
                         f"({type(a).__name__}) of {given}, shape {tuple(a.shape)}: convert it on the device "
                         f"first (for a torch tensor: x.to(torch.{want}))")
    return a


def checked_target(model_name: str, output: str, a):
    """Device array `a` as targets of output `output`: int32 class ids or float32 values."""
    given = dtype_name(a)
    if given not in ("int32", "float32"):
        raise ValueError(f"{model_name}: targets of output '{output}' on the device must be int32 (class ids) "
                         f"or float32; got a device array ({type(a).__name__}) of {given}, shape "
                         f"{tuple(a.shape)}: convert it on the device first")
    return a
