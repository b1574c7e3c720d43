"""Stage bodies as they are built: `Body`, a hash-consed SSA list (emitting the same
instruction twice gives the same value, so a kernel computes a shared subexpression
once) with constant folding of index arithmetic, and the index maps every family
uses (row-major flat position, NumPy broadcasting).

Typing rule of bodies: every binary scalar op gets operands of one dtype (the
emitter inserts `cast`s the way the graph op's NumPy reference converts), the
condition of `where` is bool, index arithmetic is int64.
"""
from __future__ import annotations

from nngraph.types import is_float

from ..program import Instr

I64 = "int64"


class NotFusable(Exception):
    """The expression cannot be emitted in this kernel context (a reduction result
    read at an index other than the kernel's outer point, a buffer the same kernel
    writes, a matmul product outside its epilogue)."""


class LoweringError(Exception):
    """An op the lowering does not know, or a graph shape it cannot express."""


def py_scalar(v, dtype: str):
    if dtype == "bool":
        return bool(v)
    if is_float(dtype):
        return float(v)
    return int(v)


class Body:
    """A hash-consed SSA instruction list with a rollback log."""

    def __init__(self):
        self.instrs: list = []
        self._memo: dict = {}
        self.ints: dict = {}          # value id -> python int, for int64 consts

    def emit(self, op, args=(), ty="float32", **attrs) -> int:
        ins = Instr(op, tuple(args), tuple(sorted(attrs.items())), ty)
        key = (op, ins.args, tuple((k, repr(v), type(v).__name__) for k, v in ins.attrs), ty)
        k = self._memo.get(key)
        if k is None:
            k = len(self.instrs)
            self.instrs.append(ins)
            self._memo[key] = k
            if op == "const" and ty == I64:
                self.ints[k] = attrs["value"]
        return k

    def dtype(self, v: int) -> str:
        return self.instrs[v].dtype

    def mark(self) -> int:
        return len(self.instrs)

    def rollback(self, mark: int):
        del self.instrs[mark:]
        self._memo = {key: v for key, v in self._memo.items() if v < mark}
        self.ints = {k: v for k, v in self.ints.items() if k < mark}

    # -- index arithmetic with folding ------------------------------------
    def idx(self, axis: int) -> int:
        return self.emit("idx", (), I64, axis=axis)

    def iconst(self, v: int) -> int:
        return self.emit("const", (), I64, value=int(v))

    def isize(self, s) -> int:
        return self.iconst(s) if isinstance(s, int) else self.emit("size", (), I64, size=s)

    def iadd(self, a: int, b: int) -> int:
        ia, ib = self.ints.get(a), self.ints.get(b)
        if ia is not None and ib is not None:
            return self.iconst(ia + ib)
        if ia == 0:
            return b
        if ib == 0:
            return a
        return self.emit("add", (a, b), I64)

    def isub(self, a: int, b: int) -> int:
        ib = self.ints.get(b)
        if ib is not None:
            return self.iadd(a, self.iconst(-ib)) if ib else a
        return self.emit("sub", (a, b), I64)

    def imul(self, a: int, b: int) -> int:
        ia, ib = self.ints.get(a), self.ints.get(b)
        if ia is not None and ib is not None:
            return self.iconst(ia * ib)
        if ia == 0 or ib == 0:
            return self.iconst(0)
        if ia == 1:
            return b
        if ib == 1:
            return a
        return self.emit("mul", (a, b), I64)

    def ifloordiv(self, a: int, b: int) -> int:
        ia, ib = self.ints.get(a), self.ints.get(b)
        if ib == 1:
            return a
        if ia is not None and ib is not None:
            return self.iconst(ia // ib)
        return self.emit("floordiv", (a, b), I64)

    def imod(self, a: int, b: int) -> int:
        ia, ib = self.ints.get(a), self.ints.get(b)
        if ib == 1:
            return self.iconst(0)
        if ia is not None and ib is not None:
            return self.iconst(ia % ib)
        return self.emit("mod", (a, b), I64)

    def land(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        return self.emit("logical_and", (a, b), "bool")

    def cast(self, v: int, dtype: str) -> int:
        if self.dtype(v) == dtype:
            return v
        return self.emit("cast", (v,), dtype, dtype=dtype)


def size_prod(body: Body, sizes) -> int:
    v = body.iconst(1)
    for s in sizes:
        v = body.imul(v, body.isize(s))
    return v


def flat_index(body: Body, shape, idx) -> int:
    """Row-major flat position of `idx` in `shape`."""
    flat = body.iconst(0)
    for k in range(len(shape)):
        flat = body.iadd(body.imul(flat, body.isize(shape[k])), idx[k])
    return flat


def broadcast_index(body: Body, in_shape, out_shape, idx) -> tuple:
    """The index into an operand of `in_shape` broadcast (NumPy rules) to `out_shape`."""
    lead = len(out_shape) - len(in_shape)
    return tuple(body.iconst(0) if s == 1 else idx[lead + a] for a, s in enumerate(in_shape))
