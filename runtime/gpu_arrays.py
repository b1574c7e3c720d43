"""Arrays that live on the device for target="gpu": what a call accepts besides NumPy
arrays, and what a parameter holds between calls.

- `DeviceArray`: an input given as a device tensor (a torch tensor on the runner's
  device, or any array with `__dlpack__`, taken over by `torch.from_dlpack` without a
  copy). It answers `shape`, `ndim` and `dtype` (a NumPy dtype) as a NumPy array does,
  so Function checks and binds it with the same code and the same messages.
- `DeviceValue`: a parameter's value after a call that updated it. The new value stays
  on the device; the host copy is made the first time `p.value` asks for it (and kept),
  so a training loop on the device copies no parameter back per step. Any object with
  `to_numpy()`, `shape` and `dtype` may sit in a Parameter's state (nngraph/node.py);
  this is the one target="gpu" puts there.

Under TRITON_INTERPRET=1 the "device" is the CPU: PyTorch CPU tensors stand in for
device tensors, with the same zero-copy paths.
"""
from __future__ import annotations

import numpy as np
import torch

from nngraph.errors import InputError

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int32": torch.int32,
                "int64": torch.int64, "bool": torch.bool}
NUMPY_OF_TORCH = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64),
                  torch.int32: np.dtype(np.int32), torch.int64: np.dtype(np.int64), torch.bool: np.dtype(np.bool_),
                  torch.float16: np.dtype(np.float16), torch.int16: np.dtype(np.int16),
                  torch.int8: np.dtype(np.int8), torch.uint8: np.dtype(np.uint8)}


def as_tensor(v):
    """`v` as a torch tensor without copying when it is a device array (a torch tensor or
    a DLPack-capable array that is not a NumPy array); None for anything else."""
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, (np.ndarray, np.generic)) or not hasattr(v, "__dlpack__"):
        return None
    return torch.from_dlpack(v)


def pinned_device(device: str) -> torch.device:
    """`device` with its index resolved once ('cuda' -> the current CUDA device), so that
    no call asks torch.cuda for the current device again (where the runner's constants
    and parameters were uploaded is where its inputs must be)."""
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return d


def same_device(t, device: torch.device) -> bool:
    """Whether tensor `t` is on `device` ('cuda' without an index is the current device)."""
    if t.device.type != device.type:
        return False
    if device.type != "cuda":
        return True
    want = device.index if device.index is not None else torch.cuda.current_device()
    return t.device.index == want


class DeviceArray:
    """A validated device input: its C-contiguous tensor, seen through NumPy's shape/dtype."""

    __slots__ = ("tensor", "shape", "ndim", "dtype")

    def __init__(self, tensor):
        self.tensor = tensor if tensor.is_contiguous() else tensor.contiguous()
        self.shape = tuple(int(s) for s in tensor.shape)
        self.ndim = tensor.dim()
        self.dtype = NUMPY_OF_TORCH.get(tensor.dtype, np.dtype(object))

    @classmethod
    def of(cls, v, device: torch.device, label: str, expected: str):
        """The DeviceArray for input `label`, or None when `v` is no device array; an
        InputError when it is one on another device or of a dtype NumPy cannot name."""
        t = as_tensor(v)
        if t is None:
            return None
        if not same_device(t, device):
            raise InputError(f"input '{label}': expected {expected} on device {device}, got a "
                             f"{type(v).__name__} on {t.device} (move it with fn.to_device(array) or .to('{device}'))")
        if t.dtype not in NUMPY_OF_TORCH:
            raise InputError(f"input '{label}': expected {expected}, got a tensor of {t.dtype}")
        return cls(t)

    def astype(self, dtype):
        """A device copy cast to the NumPy dtype `dtype` (cast_inputs=True)."""
        return DeviceArray(self.tensor.to(TORCH_DTYPES[np.dtype(dtype).name]))


class DeviceValue:
    """A parameter value held on the device; `to_numpy()` copies it to the host once.
    `shape` and `dtype` are read from the tensor only when asked.

    A value over storage that a replayed graph rewrites in place (runtime/gpu_replay.py's
    StaticParams: one DeviceValue per parameter for the runner's life, so that a replay
    hands out the same objects instead of making new ones) shares that storage's
    `clock`, a one-element list the replay advances: a host copy taken at an older
    clock is stale and made again, and `version` tells a reader that copies the value
    whether it changed since it last did."""

    __slots__ = ("tensor", "_host", "_clock", "_seen")

    def __init__(self, tensor, clock=None):
        self.tensor = tensor
        self._host = None
        self._clock = clock
        self._seen = 0

    @property
    def version(self) -> int:
        """How many times the storage under this value was rewritten (0 for a value of its own)."""
        return 0 if self._clock is None else self._clock[0]

    @property
    def shape(self) -> tuple:
        return tuple(self.tensor.shape)

    @property
    def dtype(self):
        return NUMPY_OF_TORCH[self.tensor.dtype]

    def to_numpy(self) -> np.ndarray:
        """The host copy, read-only: it is what `p.value` returns, and an edit of it in
        place (`p.value[0] = 9`) could never reach the device tensor the next call
        reads, so it raises instead of being dropped (`p.value = array` sets a value)."""
        now = self.version
        if self._host is None or self._seen != now:
            host = to_host(self.tensor)
            host.flags.writeable = False
            self._host, self._seen = host, now
        return self._host


def device_tensor(a):
    """The device tensor of a runner's input (a DeviceArray, or a torch tensor that passed
    a Function's checks before), None for a host array."""
    if isinstance(a, DeviceArray):
        return a.tensor
    return a if isinstance(a, torch.Tensor) else None


def to_host(t) -> np.ndarray:
    """A NumPy array of tensor `t`'s values that shares no memory with it."""
    return t.numpy().copy() if t.device.type == "cpu" else t.cpu().numpy()


def host_tensor(a: np.ndarray):
    """A CPU tensor over `a`, C-contiguous, shape kept (np.ascontiguousarray would make a
    0-d array (1,)); a private copy when `a` is read-only, so a kernel never sees memory
    it may not write."""
    a = np.require(a, requirements="C")
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def copied_once(a: np.ndarray) -> None:
    """Mark a parameter's NumPy value read-only once its copy is on the device: the
    runner reuses that copy while the parameter holds the same array (one identity
    test per call), so an edit of the array in place (`p.value[0] = 9`) would never
    reach the device; it raises instead (`p.value = array` sets a new value)."""
    a.flags.writeable = False


def upload(a, device: torch.device):
    """A device tensor of host array `a` (see host_tensor)."""
    t = host_tensor(a)
    return t.to(device) if device.type != "cpu" else t


def view_tensor(base, shape, offset=None):
    """A Program view (passes/program.py) of the tensor `base`: all of its memory in
    another row-major shape, or, for a part, the elements from `offset` on."""
    if offset is None:
        return base.view(shape)
    n = 1
    for s in shape:
        n *= int(s)
    return base.reshape(-1)[offset:offset + n].view(shape)
