"""Prints one stage body (SSA scalar instructions) as Triton block code.

Every value is a block: it varies along some of the kernel's block axes ("groups":
x for the outer block, r for the inner reduction block, m/n for a matmul tile) and
is broadcast along the others, so a row value [XBLOCK, 1] meets an element value
[XBLOCK, RBLOCK] by Triton's broadcasting. A load or store is masked by the masks
of exactly the groups its address varies along, so its mask has its shape.

Integer index arithmetic (loop indices, sizes, their sums and products) is not cast:
it has the width of the kernel's program ids and sizes, int32, or int64 where the
launcher sets INDEX64 (index_width.py). Every other value has the dtype its instruction names; operands are cast to
it where Triton's own promotion would differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nngraph.types import is_float

from .names import paren, prod_expr, size_expr
from .scalar_ops import BINARY, COMPARE, FLOAT_OPS, LOGICAL, TL_DTYPE, UNARY, literal, uniform_expr


class CodegenError(Exception):
    """A Program construct the Triton printer does not handle (a bug upstream or here)."""


@dataclass(frozen=True, eq=False)
class Val:
    expr: str                    # source text: a variable name or a literal
    dtype: str                   # the dtype the Triton value has
    groups: frozenset = frozenset()
    index: bool = False          # int32 index arithmetic
    literal: bool = False        # a weakly typed Python literal
    nonneg: bool = False         # an index known to be >= 0 (floor division is plain //)
    value: object = None         # a literal's Python value (the one its text spells)


def live_instrs(body, roots) -> set:
    """Indices of the instructions that the roots need."""
    live, todo = set(), list(roots)
    while todo:
        k = todo.pop()
        if k in live:
            continue
        live.add(k)
        todo.extend(body[k].args)
    return live


def stage_roots(stage) -> list:
    roots = []
    for st in stage.stores:
        roots += list(st.index) + [st.value]
    for r in stage.reduce:
        roots += list(r[1:])
    return roots


class BodyPrinter:
    """Prints the live instructions of a body, appending source lines to `out`.

    axis(k) -> Val        the loop index k
    result(s, j) -> Val   slot j of earlier stage s
    acc -> Val            the contraction value (matmul epilogues)
    ptr(buffer id) -> (pointer name, Buffer)
    masks: group -> mask expression; zero: group -> an int32 zero block of that group
    """

    def __init__(self, out, indent, prefix, axis, result, acc, ptr, masks, zero):
        self.out, self.indent, self.prefix = out, indent, prefix
        self.axis, self.result, self.acc, self.ptr = axis, result, acc, ptr
        self.masks, self.zero = masks, zero
        self.helpers = set()

    def emit(self, line: str):
        self.out.append(self.indent + line)

    def mask_of(self, groups) -> str | None:
        ms = [self.masks[g] for g in sorted(groups) if g in self.masks]
        return " & ".join(ms) if ms else None

    # ------------------------------------------------------------------ addresses
    def offset(self, buf, index_vals, patterns=()) -> tuple:
        """Row-major element offset of buffer `buf` at the given index values."""
        groups = frozenset().union(*[v.groups for v in index_vals]) if index_vals else frozenset()
        for vals, shape, expr in patterns:   # contiguous walks recognised by the caller
            if len(vals) == len(index_vals) and all(a is b for a, b in zip(vals, index_vals)) \
                    and tuple(shape) == tuple(buf.shape):
                return expr, groups
        terms = []
        shape = list(buf.shape)
        for k, v in enumerate(index_vals):
            if v.literal and v.expr == "0":
                continue
            stride = prod_expr(shape[k + 1:])
            terms.append(paren(v.expr) if stride == "1" else f"{paren(v.expr)} * {paren(stride)}")
        return (" + ".join(terms) if terms else "0"), groups

    # ------------------------------------------------------------------ values
    def cast(self, v: Val, dtype: str) -> str:
        if v.literal:
            return v.expr
        if v.dtype == dtype or (v.index and dtype in ("int32", "int64")):
            return v.expr
        if dtype == "bool":
            return f"({v.expr} != 0)"
        return f"{paren(v.expr)}.to({TL_DTYPE[dtype]})"

    def print(self, body, live, patterns=()) -> dict:
        """Prints the live instructions in order; returns {instr index: Val}."""
        vals = {}
        for k, ins in enumerate(body):
            if k in live:
                vals[k] = self.instr(k, ins, [vals[a] for a in ins.args], patterns)
        return vals

    def var(self, k: int) -> str:
        return f"{self.prefix}{k}"

    def instr(self, k, ins, args, patterns) -> Val:
        """One instruction's Val, printing what it needs: the rule of its op in RULES
        (UNARY and BINARY ops print through scalar_ops.py's format tables)."""
        rule = RULES.get(ins.op)
        if rule is None:
            rule = _unary if ins.op in UNARY else _binary if ins.op in BINARY else None
        if rule is None:
            raise CodegenError(f"the Triton printer has no rule for scalar op '{ins.op}'")
        return rule(self, k, ins, args, patterns)

    def load(self, name, ins, args, patterns) -> Val:
        ptr, buf = self.ptr(ins.attr("buffer"))
        masked = bool(ins.attr("masked"))
        index = args[:-1] if masked else args
        if len(index) != len(buf.shape):
            raise CodegenError(f"load of {buf.name}: {len(index)} indices for a {len(buf.shape)}-d buffer")
        off, groups = self.offset(buf, index, patterns)
        extra = (args[-1].groups - groups) if masked else frozenset()
        for g in sorted(extra):          # the mask varies where the address does not: widen the address
            off = self.zero[g] if off == "0" else f"{off} + {self.zero[g]}"
        parts = []
        dom = self.mask_of(groups | extra)
        if dom:
            parts.append(dom)
        if masked:
            parts.append(paren(args[-1].expr))
        mask = " & ".join(parts)
        addr = ptr if off == "0" else f"{ptr} + {off}"
        if mask:
            fill = literal(ins.attr("fill", 0), buf.dtype)
            self.emit(f"{name} = tl.load({addr}, mask={mask}, other={fill})")
        else:
            self.emit(f"{name} = tl.load({addr})")
        return Val(name, buf.dtype, groups | (args[-1].groups if masked else frozenset()))

    def store(self, st, vals, patterns=()):
        ptr, buf = self.ptr(st.buffer)
        index = [vals[a] for a in st.index]
        if len(index) != len(buf.shape):
            raise CodegenError(f"store to {buf.name}: {len(index)} indices for a {len(buf.shape)}-d buffer")
        v = vals[st.value]
        off, groups = self.offset(buf, index, patterns)
        extra = v.groups - groups
        for g in sorted(extra):          # a row value stored per row: give the address its shape
            off = self.zero[g] if off == "0" else f"{off} + {self.zero[g]}"
        mask = self.mask_of(groups | extra)
        addr = ptr if off == "0" else f"{ptr} + {off}"
        value = self.cast(v, buf.dtype) if not v.index else v.expr
        fn = "tl.atomic_add" if st.accumulate else "tl.store"   # a scatter-add's points may share an element
        self.emit(f"{fn}({addr}, {value}, mask={mask})" if mask else f"{fn}({addr}, {value})")


# ----------------------------------------------------------------------------- instruction rules
# rule(printer, k, ins, args, patterns) -> Val, one per op of the body language that
# is not a plain UNARY / BINARY format-table entry

RULES: dict = {}


def _rule(*ops):
    def register(fn):
        for op in ops:
            RULES[op] = fn
        return fn
    return register


def _py(value, dtype: str):
    """The Python value a literal of dtype spells (literal() prints it)."""
    return bool(value) if dtype == "bool" else float(value) if is_float(dtype) else int(value)


def _groups(args) -> frozenset:
    return frozenset().union(*[a.groups for a in args]) if args else frozenset()


@_rule("idx")
def _idx(pr, k, ins, args, patterns):
    return pr.axis(ins.attr("axis"))


@_rule("size")
def _size(pr, k, ins, args, patterns):
    s = ins.attr("size")
    return Val(size_expr(s), "int32", frozenset(), index=True, literal=isinstance(s, int), nonneg=True,
               value=s if isinstance(s, int) else None)


@_rule("const")
def _const(pr, k, ins, args, patterns):
    v, dt = ins.attr("value"), ins.dtype
    if dt == "float64" and np.isfinite(v) and float(np.float32(v)) != float(v):
        # a Python float literal is float32 in compiled Triton: spell the float64 value out
        return Val(f"tl.full([], {literal(v, dt)}, tl.float64)", dt, frozenset())
    return Val(literal(v, dt), dt, frozenset(), index=dt in ("int32", "int64"), literal=True,
               nonneg=dt in ("int32", "int64") and v >= 0, value=_py(v, dt))


@_rule("result")
def _result(pr, k, ins, args, patterns):
    return pr.result(ins.attr("stage"), ins.attr("slot"))


@_rule("acc")
def _acc(pr, k, ins, args, patterns):
    if pr.acc is None:
        raise CodegenError("'acc' outside a contraction epilogue")
    return pr.acc


@_rule("load")
def _load(pr, k, ins, args, patterns):
    return pr.load(pr.var(k), ins, args, patterns)


@_rule("uniform")
def _uniform(pr, k, ins, args, patterns):
    counter, index = args
    pr.helpers.add("_hash32")
    name = pr.var(k)
    pr.emit(f"{name} = {uniform_expr(ins.attr('seed'), paren(counter.expr), paren(index.expr))}")
    return Val(name, "float32", _groups(args))


@_rule("cast")
def _cast(pr, k, ins, args, patterns):
    (a,) = args
    to = ins.attr("dtype") or ins.dtype
    if a.literal:
        v = _py(a.value, to)
        return Val(literal(v, to), to, frozenset(), index=to in ("int32", "int64"), literal=True, value=v)
    if a.index and to in ("int32", "int64"):
        return a
    name = pr.var(k)
    pr.emit(f"{name} = {pr.cast(a, to)}")
    return Val(name, to, _groups(args))


@_rule("where")
def _where(pr, k, ins, args, patterns):
    c, a, b = args
    dt, name = ins.dtype, pr.var(k)
    pr.emit(f"{name} = tl.where({c.expr}, {pr.cast(a, dt)}, {pr.cast(b, dt)})")
    return Val(name, dt, _groups(args), index=a.index and b.index and dt in ("int32", "int64"))


def _unary(pr, k, ins, args, patterns):
    op, dt, name = ins.op, ins.dtype, pr.var(k)
    fmt, helpers = UNARY[op]
    (a,) = args
    if op == "sqrt" and dt == "float32":
        fmt = "tl.sqrt_rn({a})"             # IEEE rounding (tl.sqrt is approximate on GPUs)
    if op == "sign" and is_float(dt):
        fmt = "tl.where({a} > 0, 1.0, tl.where({a} < 0, -1.0, {a}))"
    a_src = a.expr if op in LOGICAL else pr.cast(a, dt)
    if a.literal and op not in ("neg", "stop_gradient", "logical_not"):
        a_src = f"tl.full([], {a.expr}, {TL_DTYPE[dt]})"
    pr.helpers |= set(helpers)
    pr.emit(f"{name} = {fmt.format(a=paren(a_src), t=TL_DTYPE[dt])}")
    out_dt = "bool" if op == "logical_not" else dt
    return Val(name, out_dt, _groups(args), index=a.index and op in ("neg", "abs", "stop_gradient"))


# a constant exponent: exact and cheap
_POW_SPECIAL = {1.0: "{a}", 2.0: "{a} * {a}", 3.0: "{a} * {a} * {a}", 0.5: "tl.sqrt({a})",
                -0.5: "tl.rsqrt({a})", -1.0: "1.0 / {a}"}


def _binary(pr, k, ins, args, patterns):
    op, dt, name = ins.op, ins.dtype, pr.var(k)
    fmt, helpers = BINARY[op]
    a, b = args
    if op in COMPARE or op in LOGICAL:
        sa, sb = a.expr, b.expr
        out_dt, index = "bool", False
        if op in LOGICAL and a.groups != b.groups:   # & of a 0-d and a block trips the interpreter
            fmt = "tl.where({a}, {b}, False)" if op == "logical_and" else "tl.where({a}, True, {b})"
    else:
        index = a.index and b.index and dt in ("int32", "int64")
        sa, sb = (a.expr, b.expr) if index else (pr.cast(a, dt), pr.cast(b, dt))
        if a.literal and b.literal:
            sa = f"tl.full([], {a.expr}, {TL_DTYPE[dt]})"
        out_dt = "int32" if index else dt
    nonneg = index and a.nonneg and b.nonneg and op in ("add", "mul", "floordiv", "mod", "maximum", "minimum")
    if index and a.nonneg and b.nonneg and op in ("floordiv", "mod"):
        fmt, helpers = ("{a} // {b}" if op == "floordiv" else "{a} % {b}"), ()   # no sign to fix
    if op in FLOAT_OPS and is_float(out_dt):
        fmt, helpers = FLOAT_OPS[op]
    if op == "div" and dt == "float32":
        fmt = "tl.math.div_rn({a}, {b})"    # IEEE rounding, as NumPy (the default is approximate)
        sa, sb = _tensor_operands(sa, sb, a.literal, b.literal)
    if op == "pow" and b.literal and not a.literal and float(b.value) in _POW_SPECIAL:
        fmt, helpers = _POW_SPECIAL[float(b.value)], ()
    if helpers:       # helper functions take tensors, not Python literals
        sa, sb = _tensor_operands(sa, sb, a.literal, b.literal)
    pr.helpers |= set(helpers)
    pr.emit(f"{name} = {fmt.format(a=paren(sa), b=paren(sb))}")
    return Val(name, out_dt, _groups(args), index=index, nonneg=nonneg)


def _tensor_operands(sa, sb, a_lit, b_lit) -> tuple:
    """A literal operand as a block shaped like the other operand (0-d blocks trip the interpreter)."""
    if a_lit and not b_lit:
        sa = f"tl.zeros_like({sb}) + {sa}"
    elif b_lit and not a_lit:
        sb = f"tl.zeros_like({sa}) + {sb}"
    return sa, sb
