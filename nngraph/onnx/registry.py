"""The table of ONNX operator converters, and the context each one is given.

A converter is registered once, beside its code, with the opset range it handles
and the attributes it understands: `@converter("Gemm", 1, attrs=("alpha", ...))`.
An attribute outside that list is refused by name before the converter runs, so
no attribute is ever silently ignored. A converter reads its inputs through the
context (`ctx.t(i)` a tensor, `ctx.const(i)` a value that must be known at import)
and returns one value per output: a Tensor, an ndarray (a value known at import,
which is how constant subgraphs fold) or a SymShape (a shape with dynamic sizes).

This module does not import the `onnx` package: nngraph works without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import NNGraphError

LATEST_OPSET = 28  # the newest default-domain opset the converters were checked against (onnx 1.23)


class OnnxError(NNGraphError, ValueError):
    """A model nngraph cannot import or export, naming the node, op type, opset and what."""


class NotKnownAtImport(OnnxError):
    """A value that must be known at import (a shape, axes, pads) is computed at run
    time. The conformance backend answers it by importing again with the graph's
    integer inputs bound to the arrays of the call (ng.onnx.load(..., known=))."""

    def __init__(self, message: str, value_name: str = ""):
        super().__init__(message)
        self.value_name = value_name


@dataclass(frozen=True)
class Converter:
    op_type: str
    fn: Callable
    first: int          # the first opset whose definition of the op this converter implements
    last: int           # the last one
    attrs: frozenset    # attributes it handles (any other is refused by name)


CONVERTERS: dict[str, list] = {}


def converter(op_type: str, first: int = 1, last: int = LATEST_OPSET, attrs=()):
    """Register `fn(ctx)` for `op_type` in models importing opsets first..last."""
    def deco(fn):
        CONVERTERS.setdefault(op_type, []).append(Converter(op_type, fn, first, last, frozenset(attrs)))
        return fn
    return deco


def supported_ops() -> dict:
    """op type -> (first opset, last opset) over all its converters."""
    return {op: (min(c.first for c in cs), max(c.last for c in cs)) for op, cs in sorted(CONVERTERS.items())}


def find_converter(op_type: str, opset: int, describe: str) -> Converter:
    cs = CONVERTERS.get(op_type)
    if not cs:
        raise OnnxError(f"{describe}: operator {op_type} is not supported by nngraph's ONNX importer "
                        f"(ng.onnx.SUPPORTED_OPS lists the ones that are)")
    for c in cs:
        if c.first <= opset <= c.last:
            return c
    ranges = ", ".join(f"{c.first}..{c.last}" for c in cs)
    raise OnnxError(f"{describe}: {op_type} at opset {opset} is not supported (supported opsets: {ranges})")


@dataclass(frozen=True)
class SymShape:
    """The value of a Shape op whose sizes are not all known at import: a 1-d int64
    vector of ints and symbolic Dims. Shape arithmetic on it (gather, slice, concat,
    unsqueeze) stays symbolic; Reshape, Expand and ConstantOfShape accept it."""

    sizes: tuple
    scalar: bool = False  # a 0-d size (Gather of one entry), the one entry in `sizes`

    @property
    def shape(self) -> tuple:
        return () if self.scalar else (len(self.sizes),)


class Ctx:
    """What a converter may ask about the node it converts.

    `values[i]` is the i-th input's value (Tensor, ndarray, SymShape, or None when
    the input is left out); `as_tensor` turns known arrays into graph tensors.
    """

    def __init__(self, node, opset: int, values: list, as_tensor: Callable, describe: str,
                 import_subgraph: Callable | None = None):
        self.node, self.opset, self.values = node, opset, values
        self._as_tensor, self.describe = as_tensor, describe
        self._import_subgraph = import_subgraph
        self.attrs = {a.name: a for a in node.attribute}

    def subgraph(self, name: str, bound: list) -> list:
        """The outputs of the graph attribute `name` (a Loop, Scan or If body) with its
        inputs bound to `bound`: Tensors, ndarrays or SymShapes, one per body input."""
        if name not in self.attrs:
            raise self.error(f"attribute {name} (a graph) is required")
        return self._import_subgraph(self.attrs[name].g, list(bound), self.describe)

    def inline(self, graph, bound: list, opset: int) -> list:
        """The outputs of `graph` (a GraphProto the converter made, such as an ONNX
        function's body) imported at `opset` with its inputs bound to `bound`."""
        return self._import_subgraph(graph, list(bound), self.describe, opset)

    @property
    def op_type(self) -> str:
        return self.node.op_type

    @property
    def n_outputs(self) -> int:
        """Outputs the model asks for (trailing optional ones left out do not count)."""
        outs = list(self.node.output)
        while outs and not outs[-1]:
            outs.pop()
        return len(outs)

    def error(self, what: str) -> OnnxError:
        return OnnxError(f"{self.describe}: {what}")

    def has(self, i: int) -> bool:
        return i < len(self.values) and self.values[i] is not None

    def t(self, i: int):
        """Input i as a graph tensor."""
        if not self.has(i):
            raise self.error(f"input {i} is required")
        return self.tensor(self.values[i], f"input {i}")

    def tensor(self, v, what: str = "a value"):
        """Any value a converter holds (Tensor, ndarray, static SymShape) as a graph tensor."""
        if isinstance(v, SymShape):
            if any(not isinstance(s, (int, np.integer)) for s in v.sizes):
                raise self.error(f"{what} is a shape with dynamic sizes {v.sizes}, used as data; "
                                 "only Reshape, Expand, ConstantOfShape and shape arithmetic accept it")
            v = np.asarray(v.sizes[0] if v.scalar else v.sizes, np.int64)
        return self._as_tensor(v)

    def const(self, i: int, what: str = "") -> np.ndarray:
        """Input i as an array known at import (shapes, axes, pads...)."""
        if not self.has(i):
            raise self.error(f"input {i} is required")
        v = self.values[i]
        if isinstance(v, np.ndarray):
            return v
        if getattr(v, "op", None) == "parameter":  # an initializer read as a setting: its value now
            return v.value
        raise NotKnownAtImport(f"{self.describe}: input {i}{' (' + what + ')' if what else ''} must be known "
                               "at import (an initializer or a constant expression), but it is computed at run time",
                               self.node.input[i])

    def shape_value(self, i: int, what: str = "shape"):
        """Input i as a shape: a tuple of ints and Dims (a SymShape or a known int vector)."""
        v = self.values[i] if self.has(i) else None
        if isinstance(v, SymShape):
            return tuple(v.sizes)
        return tuple(int(s) for s in self.const(i, what).reshape(-1))

    def attr(self, name: str, default=None):
        a = self.attrs.get(name)
        if a is None:
            return default
        from onnx import helper
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, list) and v and isinstance(v[0], bytes):
            return [s.decode() for s in v]
        return v

    def refuse_unless(self, name: str, allowed, default):
        """The attribute's value, refused by name unless it is one of `allowed`."""
        v = self.attr(name, default)
        if v not in allowed:
            raise self.error(f"attribute {name}={v!r} is not supported (supported: "
                             f"{', '.join(repr(a) for a in allowed)})")
        return v
