"""Tensor types: a dtype and a shape whose entries are ints or symbolic sizes.

Types are values: two equal types compare and hash equal, so nodes can be
compared structurally (CSE) and printed in the textual IR.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Union

import numpy as np

# dtype name -> (short IR name, numpy dtype)
DTYPES = {
    "float32": ("f32", np.dtype(np.float32)),
    "float64": ("f64", np.dtype(np.float64)),
    "int32": ("i32", np.dtype(np.int32)),
    "int64": ("i64", np.dtype(np.int64)),
    "bool": ("bool", np.dtype(np.bool_)),
}
SHORT_TO_DTYPE = {short: name for name, (short, _) in DTYPES.items()}
FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int32", "int64")


def as_dtype(d) -> str:
    """Normalise 'f32', 'float32', np.float32, np.dtype('float32') to 'float32'."""
    if isinstance(d, str):
        if d in DTYPES:
            return d
        if d in SHORT_TO_DTYPE:
            return SHORT_TO_DTYPE[d]
    try:
        name = np.dtype(d).name
    except TypeError:
        name = None
    if name in DTYPES:
        return name
    raise TypeError(f"unsupported dtype {d!r}; nngraph supports {', '.join(DTYPES)}")


def np_dtype(d: str) -> np.dtype:
    return DTYPES[as_dtype(d)][1]


def is_float(d: str) -> bool:
    return d in FLOAT_DTYPES


def is_int(d: str) -> bool:
    return d in INT_DTYPES


def promote(*dtypes: str) -> str:
    """NumPy's promotion among the supported dtypes (int64 + float32 -> float64)."""
    return as_dtype(np.result_type(*[np_dtype(d) for d in dtypes]))


_anon = itertools.count()


@dataclass(frozen=True)
class Dim:
    """A symbolic size. Two Dims with the same name are the same size."""

    name: str

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__

    @staticmethod
    def fresh() -> "Dim":
        return Dim(f"_{next(_anon)}")


Size = Union[int, Dim]


def as_size(s) -> Size:
    if s is None:
        return Dim.fresh()
    if isinstance(s, Dim):
        return s
    if isinstance(s, str):
        if not s.isidentifier():
            raise ValueError(f"a symbolic size must be an identifier, got {s!r}")
        return Dim(s)
    if isinstance(s, (int, np.integer)) and not isinstance(s, bool):
        if s < 0:
            raise ValueError(f"sizes must be >= 0, got {s}")
        return int(s)
    raise TypeError(f"a shape entry must be an int, None or a name, got {s!r}")


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple

    def __post_init__(self):
        object.__setattr__(self, "dtype", as_dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(as_size(s) for s in self.shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"{DTYPES[self.dtype][0]}[{','.join(map(str, self.shape))}]"

    __repr__ = __str__

    @property
    def is_static(self) -> bool:
        return all(isinstance(s, int) for s in self.shape)

    def symbols(self) -> set:
        return {s.name for s in self.shape if isinstance(s, Dim)}


def size_product(shape) -> tuple:
    """A symbolic product: (integer coefficient, Counter of symbol names)."""
    coef, syms = 1, Counter()
    for s in shape:
        if isinstance(s, Dim):
            syms[s.name] += 1
        else:
            coef *= s
    return coef, syms


def eval_size(s: Size, env: dict) -> int:
    """One size's value: s itself, or its symbol's bound value from env."""
    return env[s.name] if isinstance(s, Dim) else s


def concrete_shape(shape, env: dict) -> tuple:
    """Shape with symbols replaced by their bound values from env (name -> int)."""
    return tuple(env[s.name] if isinstance(s, Dim) else s for s in shape)


@dataclass(frozen=True)
class TupleType(TensorType):
    """The type of a node with several results (today: `scan`, nngraph/ops/scan.py).

    Every node has one type; a multi-result node carries the types of its results in
    `parts` and holds no data of its own: as a tensor it is an empty bool[0], so a pass
    that sizes buffers from `dtype`/`shape` sees zero bytes. Its results are read by
    `scan_output {index=i}` nodes, each an ordinary tensor. Prints as `(f32[N,4], f32[T,N,4])`.
    """

    parts: tuple = ()

    def __init__(self, parts):
        object.__setattr__(self, "parts", tuple(parts))
        super().__init__("bool", (0,))

    def __str__(self) -> str:
        return "(" + ", ".join(map(str, self.parts)) + ")"

    __repr__ = __str__

    @property
    def is_static(self) -> bool:
        return all(p.is_static for p in self.parts)

    def symbols(self) -> set:
        return set().union(*(p.symbols() for p in self.parts)) if self.parts else set()
