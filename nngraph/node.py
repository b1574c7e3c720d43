"""Immutable graph nodes (`Tensor`) and the op registry.

A node is an op name, its input nodes, static attributes and its type. The
type is inferred by the op when the node is made, so a graph that exists is
a graph that type-checks. Nodes compare by identity; `key()` gives the
structural identity used by CSE and the text printer.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import ShapeError
from .sizes import collecting
from .source_location import user_location
from .types import TensorType

OPS: dict[str, "Op"] = {}


class Op:
    """Everything the compiler knows about one op, defined once.

    - ``infer(inputs, attrs) -> TensorType`` from the input nodes (raise ShapeError
      naming the operands when they do not fit)
    - ``reference(ctx, *arrays) -> ndarray``: the NumPy definition (the oracle)
    - ``vjp(node, g, needs) -> tuple`` of cotangents per input (None where none
      flows; ``needs[i]`` says whether input i wants one), written in graph ops so
      gradients can be differentiated again
    - ``kind``: how it lowers: "source", "elementwise", "reduction", "movement",
      "contraction", "index", "random", "special"
    - ``canonicalize(inputs, attrs)``: optional build-time rewrite to a stable or
      simpler form (log(exp z) -> z); returns a node or None
    - ``nondiff``: True when no gradient flows through it (argmax, comparisons)
    - ``category``: for a binary elementwise op, how its operands convert (the
      lowering and the interpreter read it): "arith" (to the result dtype), "div"
      (likewise; ints divide to float32), "float" (float operands only), "compare"
      (to the promoted dtype, result bool), "logical" (bool operands), "bitwise"
      (integer operands only, to the result dtype: bitwise_*, trunc_div); else None
    - ``cost``: the weight of computing one element again where it is read, which
      fusion (passes/fusion.py) sums to decide between recomputing a value in every
      kernel that uses it and materialising it once: 4 for transcendental ops and
      divisions (``EXPENSIVE``), 0 for movement and sources, else 1
    - ``takes_epilogue``: a contraction whose kernel can compute the elementwise
      values that follow it (bias, activation, optimizer step) at each output point
    """

    EXPENSIVE = 4

    def __init__(self, name: str, kind: str, infer: Callable, reference: Callable,
                 vjp: Callable | None = None, canonicalize: Callable | None = None,
                 nondiff: bool = False, doc: str = "", category: str | None = None, cost: int | None = None,
                 takes_epilogue: bool = False):
        self.name, self.kind = name, kind
        self.infer, self.reference = infer, reference
        self.vjp, self.canonicalize, self.nondiff = vjp, canonicalize, nondiff
        self.doc, self.category = doc, category
        self.cost = cost if cost is not None else (0 if kind in ("movement", "source") else 1)
        self.takes_epilogue = takes_epilogue

    def __repr__(self):
        return f"Op({self.name})"


def register(op: Op) -> Op:
    if op.name in OPS:
        raise ValueError(f"op {op.name} defined twice")
    OPS[op.name] = op
    return op


class ConstValue:
    """A hashable wrapper of a constant's ndarray (hash and equality by bytes)."""

    __slots__ = ("array", "_hash")

    def __init__(self, array: np.ndarray):
        self.array = np.array(array, order="C")
        self.array.setflags(write=False)
        self._hash = hash((self.array.dtype.str, self.array.shape, self.array.tobytes()))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (isinstance(other, ConstValue) and self._hash == other._hash
                and self.array.dtype == other.array.dtype
                and self.array.shape == other.array.shape
                and np.array_equal(self.array, other.array, equal_nan=True))

    def __repr__(self):
        return f"ConstValue({self.array!r})"


def _freeze(v):
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, tuple):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, np.ndarray):
        return ConstValue(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


class Tensor:
    """A symbolic tensor: one node of the dataflow graph. Immutable."""

    __slots__ = ("op", "inputs", "attrs", "type", "name", "where", "joins", "__weakref__")
    __array_priority__ = 1000  # so ndarray + Tensor calls Tensor.__radd__

    def __init__(self, op: str, inputs: tuple, attrs: dict, type_: TensorType,
                 name: str | None = None, where: str | None = None):
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "attrs", dict(sorted(attrs.items())))
        object.__setattr__(self, "type", type_)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "where", where or user_location())
        object.__setattr__(self, "joins", ())   # sizes its op joined (nngraph/sizes.py)

    def __setattr__(self, k, v):
        raise AttributeError("nngraph tensors are immutable; build a new node instead")

    # -- static type --------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.ndim

    def key(self) -> tuple:
        """Structural identity (op, inputs by identity, attrs): equal keys compute equal values."""
        return (self.op, tuple(id(i) for i in self.inputs), tuple(self.attrs.items()))

    def __repr__(self):
        label = f" {self.name}" if self.name else ""
        return f"<Tensor{label} {self.op} : {self.type} @ {self.where}>"

    def __hash__(self):
        return id(self)

    def __eq__(self, other):  # identity; use ng.equal for elementwise comparison
        return self is other

    def __bool__(self):
        raise TypeError("a symbolic tensor has no truth value; use ng.where for a choice")

    def __len__(self):
        from .types import Dim
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        if isinstance(self.shape[0], Dim):
            raise TypeError(f"len() of a tensor whose first size is symbolic ({self.shape[0]})")
        return self.shape[0]

    def __iter__(self):
        raise TypeError("iterating a symbolic tensor is not supported; index it instead")

    # operator overloads are attached in nngraph/api.py, next to the functions they call


class Parameter(Tensor):
    """State that lives across calls (Theano's shared variable). Its value is mutable;
    the node itself is not."""

    __slots__ = ("_state",)

    def __init__(self, value: np.ndarray, name: str | None, trainable: bool, where: str | None = None):
        value = np.array(value)
        from .types import as_dtype
        if value.dtype == np.float64 and value.ndim == 0:
            pass
        t = TensorType(as_dtype(value.dtype), value.shape)
        super().__init__("parameter", (), {"trainable": bool(trainable)}, t, name, where)
        object.__setattr__(self, "_state", {"value": value.copy()})

    @property
    def trainable(self) -> bool:
        return self.attrs["trainable"]

    @property
    def value(self) -> np.ndarray:
        """The value as a NumPy array. A backend may leave a value it computed where it
        computes (target="gpu" keeps updated parameters on the device): then the state
        holds an object with `to_numpy()`, `shape` and `dtype`, copied to the host here,
        once, on the first read."""
        v = self._state["value"]
        return v if isinstance(v, np.ndarray) else v.to_numpy()

    @value.setter
    def value(self, arr):
        arr = np.asarray(arr)
        if arr.shape != self.type.shape:
            raise ShapeError(f"parameter {self.name}: expected shape {self.type.shape}, got {arr.shape}")
        if arr.dtype != self._state["value"].dtype:
            if not np.can_cast(arr.dtype, self._state["value"].dtype, casting="same_kind"):
                raise ShapeError(f"parameter {self.name}: expected dtype {self.dtype}, got {arr.dtype}")
            arr = arr.astype(self._state["value"].dtype)
        # always a private C-ordered copy: the backends read a parameter's buffer as
        # C-contiguous, so a Fortran-order or strided value (M.T) must not be kept as is
        self._state["value"] = np.array(arr, copy=True, order="C")

    def __setattr__(self, k, v):
        if k == "value":  # the one mutable thing (Tensor.__setattr__ forbids the rest)
            Parameter.value.fset(self, v)
        else:
            super().__setattr__(k, v)

    def key(self):
        return ("parameter", id(self))


def make(op: str, inputs=(), name: str | None = None, where: str | None = None,
         canonical: bool = True, **attrs) -> Tensor:
    """Build a node: canonicalise (unless canonical=False, as the parser and passes
    that rebuild a graph want), infer its type (raising ShapeError), record the user's line."""
    o = OPS[op]
    inputs = tuple(inputs)
    attrs = {k: _freeze(v) for k, v in attrs.items()}
    if canonical and o.canonicalize is not None:
        rewritten = o.canonicalize(inputs, attrs)
        if rewritten is not None:
            return rewritten
    with collecting() as joins:
        t = o.infer(inputs, attrs)
    node = Tensor(op, inputs, attrs, t, name, where)
    if joins:
        object.__setattr__(node, "joins", tuple(joins))
    return node


def shape_error(op: str, msg: str, *operands) -> ShapeError:
    """A ShapeError naming the op, its operands with their types, and the rule that failed."""
    ops = ", ".join(f"{_describe(o)}" for o in operands)
    return ShapeError(f"{op}: {msg}" + (f" (operands: {ops})" if ops else ""))


def _describe(o) -> str:
    if isinstance(o, Tensor):
        return f"{o.name or o.op}: {o.type} built at {o.where}"
    return str(o)
