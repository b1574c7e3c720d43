"""Call-time preconditions that a graph's types cannot express, checked on the
inputs before any backend runs (so every target refuses the same calls, and no
native code ever reads out of bounds or reduces an empty axis).

- Class ids: `one_hot` (and so `cross_entropy` with integer labels) compares the
  labels with 0..n-1; an id outside that range would silently select no class
  (loss 0, gradient 0). A label placeholder feeding one must hold ids in [0, n)
  (labels computed in the graph are checked there: nngraph/index_guards.py).
- Sizes: a tensor whose byte count no address space holds (2**32 x 2**32 floats)
  is a MemoryError, computed with Python ints (an int64 count would wrap and size a
  buffer too small for the kernels that write it).
- Empty reductions: `max`, `min` and `argmax` have no identity, so an axis whose
  dynamic size is 0 at this call is an error (as in NumPy).

Each check costs one pass over a label array (min and max), one dict lookup, or
(sizes) a product per distinct dynamic shape once per new set of sizes.

Only the class-id checks read values (`reads_values`); the others depend on the sizes
alone, so a Function skips them for a call whose sizes it bound before from inputs of
the same types and shapes (runtime/function.py).

Labels on a device (a torch tensor, target="gpu") are reduced where they live, and
reading the result back waits for the device: that would make every call wait for the
one before it. So a label tensor that passed is remembered (by identity, through a weak
reference, with its version counter, which torch advances at every in-place write to
the tensor or a view of it: copy_, fill_, out=, indexing assignment) and not reduced
again while it is the same object at the same version. A write that torch does not
count (another framework writing through DLPack, a custom kernel given the tensor's
pointer, a write through `t.data`) is not seen: refill labels through torch, or pass a
new tensor. Tensors made under torch.inference_mode keep no version counter: they are
reduced at every call.
"""
from __future__ import annotations

import threading
import weakref

from nngraph.errors import InputError
from nngraph.index_guards import one_hot_labels
from nngraph.types import Dim, np_dtype

from .sizes import MAX_BYTES, element_count

_NO_IDENTITY = ("max", "min", "argmax")


def reads_values(check) -> bool:
    """Whether `check` reads the inputs' values (else it depends on the sizes alone)."""
    return getattr(check, "reads_values", False)


def call_checks(graph) -> list:
    """The checks for `graph`: callables check(vals, env) raising InputError."""
    index = {id(ph): i for i, ph in enumerate(graph.inputs)}
    nodes = graph.nodes()
    checks = [_size_check(nodes)]
    for n in nodes:
        if n.op in _NO_IDENTITY and not n.attrs.get("empty_identity"):
            checks.extend(_empty_axis_checks(n))
        elif n.op == "equal":
            c = _class_id_check(n, index)
            if c is not None:
                checks.append(c)
    return checks


def _label(ph, i) -> str:
    return ph.name or f"#{i}"


def _size_check(nodes):
    """MemoryError for a tensor of more than MAX_BYTES at these sizes (checked once
    per set of sizes: the last one is remembered)."""
    shapes = {}
    for n in nodes:
        if any(isinstance(s, Dim) for s in n.shape):
            key = (tuple(n.shape), np_dtype(n.dtype).itemsize)
            shapes.setdefault(key, n)
    dims = sorted({s.name for shape, _ in shapes for s in shape if isinstance(s, Dim)})
    last = [None]

    def check(vals, env):
        key = tuple(map(env.get, dims))
        if key == last[0]:
            return
        for (shape, itemsize), n in shapes.items():
            if any(isinstance(s, Dim) and s.name not in env for s in shape):
                continue
            nbytes = element_count(env[s.name] if isinstance(s, Dim) else s for s in shape) * itemsize
            if nbytes > MAX_BYTES:
                size = [env[s.name] if isinstance(s, Dim) else s for s in shape]
                raise MemoryError(f"{n.name or n.op} ({n.type}, built at {n.where}) would have shape {size} at "
                                  f"these sizes: {nbytes} bytes, more than any address space holds")
        last[0] = key
    return check


def _empty_axis_checks(n) -> list:
    x = n.inputs[0]
    out = []
    for a in n.attrs["axes"]:
        s = x.shape[a]
        if isinstance(s, Dim):
            out.append(_make_empty_check(n.op, a, s.name, x))
    return out


def _make_empty_check(op, axis, dim, x):
    def check(vals, env):
        if env.get(dim) == 0:
            raise InputError(f"{op} over axis {axis} of {x.name or x.op} ({x.type}, built at {x.where}): "
                             f"the axis has size 0 at this call, and an empty axis has no {op} (as in NumPy)")
    return check


def _class_id_check(n, index):
    """equal(expand_dims(labels), iota(axis=last)) as one_hot builds it, labels an input
    (labels computed in the graph are checked by nngraph/index_guards.py)."""
    c = one_hot_labels(n)
    if c is None:
        return None
    labels, n_classes = c
    i = index.get(id(labels))
    if i is None or isinstance(n_classes, Dim):
        return None
    name = _label(labels, i)
    passed = _PassedTensors()

    def check(vals, env):
        a = vals[i]
        if passed.has(a):
            return
        lo_hi = _min_max(a)
        if lo_hi is None:
            return
        lo, hi = lo_hi
        if lo < 0 or hi >= n_classes:
            bad = int(lo) if lo < 0 else int(hi)
            raise InputError(f"input '{name}': class id {bad} is out of range: the valid ids are "
                             f"0 to {n_classes - 1} ({n_classes} classes, one_hot/cross_entropy)")
        passed.add(a)
    check.reads_values = True
    return check


class _PassedTensors:
    """Torch tensors that passed a value check, by id: (weak reference, version counter)
    at the check (see the module's docstring). NumPy arrays are never remembered: they
    are checked on the host, where nothing waits for a device."""

    LIMIT = 64   # tensors remembered; beyond, start over

    def __init__(self):
        self._seen = {}

    def has(self, a) -> bool:
        """Whether `a` (a tensor as the caller gave it) passed unchanged since. A
        DeviceArray, made by the checks of this call, is never found: it is checked."""
        seen = self._seen.get(id(a))
        return seen is not None and seen[0]() is a and seen[1] == a._version

    def add(self, a) -> None:
        a = getattr(a, "tensor", a)   # a DeviceArray: the caller's tensor it wraps
        try:
            version = a._version
        except AttributeError:   # a NumPy array
            return
        except RuntimeError:     # an inference-mode tensor keeps no version counter: checked every call
            return
        if len(self._seen) >= self.LIMIT:
            self._seen.clear()
        self._seen[id(a)] = (weakref.ref(a), version)


def _min_max(a):
    """(min, max) of an input's values, or None when it is empty; a device tensor
    (runtime/gpu_arrays.DeviceArray) is reduced where it lives."""
    t = a if hasattr(a, "aminmax") else getattr(a, "tensor", None)   # a tensor as given, or a DeviceArray
    if t is not None:
        if t.numel() == 0:
            return None
        return _tensor_min_max(t)
    if a.size == 0:
        return None
    return a.min(), a.max()


_RESULTS = threading.local()   # per thread: (device, dtype) -> a 2-element tensor and its two 0-d views


def _tensor_min_max(t) -> tuple:
    """One aminmax launch writing into a buffer kept per thread, device and dtype, and
    one read back: one wait for the device, and no launch to stack the two results."""
    import torch   # only device tensors get here: torch is there
    bufs = getattr(_RESULTS, "bufs", None)
    if bufs is None:
        bufs = _RESULTS.bufs = {}
    key = (t.device, t.dtype)
    out = bufs.get(key)
    if out is None:
        pair = torch.empty(2, dtype=t.dtype, device=t.device)
        out = bufs[key] = (pair, (pair[0], pair[1]))
    torch.aminmax(t, out=out[1])
    lo, hi = out[0].tolist()
    return lo, hi
