"""How each graph op lowers to scalar body instructions (passes/program.py).

`Body` is one stage's SSA list, hash-consed (emitting the same instruction twice
gives the same value, so a kernel computes a shared subexpression once) with
constant folding of index arithmetic. `Emitter.value(node, index, mask)` returns
the body value of `node` at a point given as one int64 body value per axis:

- a node with a buffer is a load (masked when under a pad/concatenate mask);
- a reduction computed by an earlier stage of the same kernel is a `result`;
- the matmul of a contraction epilogue is `acc`;
- anything else is inlined (recomputed): elementwise ops become their scalar op
  (operands broadcast by index 0 on size-1 axes), movement ops transform the
  index (reshape by floordiv/mod, transpose by permutation, slice by stride and
  offset, pad and concatenate by masks and `where`), iota/numel/uniform become
  index expressions.

Typing rule of bodies: every binary scalar op gets operands of one dtype (the
emitter inserts `cast`s the way the graph op's NumPy reference converts), the
condition of `where` is bool, index arithmetic is int64.
"""
from __future__ import annotations

from nngraph.node import Tensor
from nngraph.types import Dim, is_float, promote, size_product

from .lower_gather import INLINE_RULES
from .program import Instr

I64 = "int64"
ARITH = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"}
COMPARE = {"less", "less_equal", "greater", "greater_equal", "equal", "not_equal"}
LOGICAL = {"logical_and", "logical_or"}


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


def _divides(a, b) -> bool:
    """Does the symbolic product a divide b?"""
    (ca, sa), (cb, sb) = a, b
    return ca != 0 and cb % ca == 0 and not (sa - sb)


def reshape_groups(in_shape, out_shape):
    """Pair runs of axes whose products agree (size-1 axes dropped), so a reshape
    that splits or merges axes becomes small floordiv/mod maps; one big group when
    no finer pairing exists."""
    ins = [k for k, s in enumerate(in_shape) if s != 1]
    outs = [k for k, s in enumerate(out_shape) if s != 1]
    groups, i, j = [], 0, 0
    while i < len(ins) or j < len(outs):
        if i >= len(ins) or j >= len(outs):
            return [(ins, outs)]
        gi, go = [ins[i]], [outs[j]]
        i, j = i + 1, j + 1
        while True:
            pi = size_product([in_shape[k] for k in gi])
            po = size_product([out_shape[k] for k in go])
            if pi == po:
                break
            if _divides(po, pi) and j < len(outs):
                go.append(outs[j])
                j += 1
            elif _divides(pi, po) and i < len(ins):
                gi.append(ins[i])
                i += 1
            else:
                return [(ins, outs)]
        groups.append((gi, go))
    return groups


def reshape_index(body: Body, in_shape, out_shape, idx) -> tuple:
    res = [body.iconst(0)] * len(in_shape)
    for gi, go in reshape_groups(in_shape, out_shape):
        if len(gi) == 1 and len(go) == 1:
            res[gi[0]] = idx[go[0]]
            continue
        flat = flat_index(body, [out_shape[k] for k in go], [idx[k] for k in go])
        stride = body.iconst(1)
        for n, k in enumerate(reversed(gi)):
            q = body.ifloordiv(flat, stride)
            res[k] = q if n == len(gi) - 1 else body.imod(q, body.isize(in_shape[k]))
            stride = body.imul(stride, body.isize(in_shape[k]))
    return tuple(res)


class Emitter:
    """Emits node values into one stage body (see the module docstring).

    buf_of:   id(node) -> buffer id for materialised nodes and sources
    results:  id(node) -> (stage, slot, kept axes) for reductions of earlier stages
    outer:    the body values of the kernel's outer loop indices
    inline:   ids of materialised nodes to recompute rather than load (members of
              the same kernel, whose buffers it writes)
    forbid:   buffers this kernel writes (reading them is NotFusable)
    acc:      (matmul node, its index) in a contraction epilogue
    probe:    record result references instead of checking them (see fusion)
    """

    def __init__(self, body: Body, buf_of: dict, buffers: dict, results=None, outer=(), stage_no=0,
                 inline=(), forbid=(), acc=None, probe=False):
        self.body, self.buf_of, self.buffers = body, buf_of, buffers
        self.results = results or {}
        self.outer, self.stage_no = tuple(outer), stage_no
        # inline and forbid are kept by reference: the kernel grows them as members join
        self.inline = inline if isinstance(inline, set) else set(inline)
        self.forbid = forbid if isinstance(forbid, set) else set(forbid)
        self.acc, self.probe = acc, probe
        self.memo: dict = {}
        self.loads: set = set()
        self.refs: list = []          # (node, index) of result references (probe mode)

    def mark(self):
        return (self.body.mark(), dict(self.memo), set(self.loads))

    def rollback(self, m):
        self.body.rollback(m[0])
        self.memo, self.loads = m[1], m[2]

    # ------------------------------------------------------------------ entry
    def value(self, n: Tensor, idx: tuple, mask=None) -> int:
        idx = tuple(idx)
        key = (id(n), idx, mask)
        v = self.memo.get(key)
        if v is None:
            v = self._value(n, idx, mask)
            self.memo[key] = v
        return v

    def _value(self, n, idx, mask):
        b = self.body
        r = self.results.get(id(n))
        if r is not None:
            return self._result(n, idx, r)
        if self.acc is not None and n is self.acc[0]:
            if any(a != b and s != 1 for a, b, s in zip(idx, self.acc[1], n.shape)):
                raise NotFusable("matmul product read at another index than its epilogue point")
            return b.emit("acc", (), n.dtype)
        if n.op == "constant":
            arr = n.attrs["value"].array
            if arr.size == 1:
                return b.emit("const", (), n.dtype, value=py_scalar(arr.reshape(()).item(), n.dtype))
        if id(n) in self.buf_of and id(n) not in self.inline:
            return self.load(self.buf_of[id(n)], idx, mask)
        fn = getattr(self, "_op_" + n.op, None)
        if fn is not None:
            return fn(n, idx, mask)
        if n.op in INLINE_RULES:
            return INLINE_RULES[n.op](self, n, idx, mask)
        if n.op in ARITH or n.op in COMPARE or n.op in LOGICAL or len(n.inputs) == 1 and _kind(n) == "elementwise":
            return self._elementwise(n, idx, mask)
        raise LoweringError(f"cannot inline {n.op} ({n.type} built at {n.where}); it must be materialised")

    def _result(self, n, idx, r):
        stage, slot, kept = r
        if stage >= self.stage_no and not self.probe:
            raise NotFusable("reduction read in its own stage")
        if self.probe:
            self.refs.append((n, idx))
        else:
            for q, k in enumerate(kept):
                if n.shape[k] != 1 and idx[k] != self.outer[q]:
                    raise NotFusable("reduction result read away from the kernel's outer point")
        return self.body.emit("result", (), n.dtype, stage=stage, slot=slot)

    def load(self, buf: int, idx, mask=None) -> int:
        if buf in self.forbid:
            raise NotFusable("reads a buffer the same kernel writes")
        shape = self.buffers[buf].shape
        idx = tuple(self.body.iconst(0) if s == 1 else i for s, i in zip(shape, idx))
        self.loads.add(buf)
        dt = self.buffers[buf].dtype
        if mask is None:
            return self.body.emit("load", idx, dt, buffer=buf)
        return self.body.emit("load", idx + (mask,), dt, buffer=buf, masked=True, fill=py_scalar(0, dt))

    # ------------------------------------------------------------------ elementwise
    def _operand(self, n, i, idx, mask, dtype=None):
        x = n.inputs[i]
        v = self.value(x, broadcast_index(self.body, x.shape, n.shape, idx), mask)
        return self.body.cast(v, dtype) if dtype else v

    def _elementwise(self, n, idx, mask):
        b, op = self.body, n.op
        if op in ARITH:
            args = [self._operand(n, i, idx, mask, n.dtype) for i in range(2)]
        elif op in COMPARE:
            dt = promote(n.inputs[0].dtype, n.inputs[1].dtype)
            args = [self._operand(n, i, idx, mask, dt) for i in range(2)]
        elif op in LOGICAL:
            args = [self._operand(n, i, idx, mask, "bool") for i in range(2)]
        else:
            args = [self._operand(n, 0, idx, mask)]
        return b.emit(op, args, n.dtype)

    def _op_stop_gradient(self, n, idx, mask):
        return self._operand(n, 0, idx, mask)

    def _op_cast(self, n, idx, mask):
        return self.body.cast(self._operand(n, 0, idx, mask), n.dtype)

    def _op_where(self, n, idx, mask):
        c = self._operand(n, 0, idx, mask, "bool")
        a = self._operand(n, 1, idx, mask, n.dtype)
        f = self._operand(n, 2, idx, mask, n.dtype)
        return self.body.emit("where", (c, a, f), n.dtype)

    def _op_iota(self, n, idx, mask):
        return self.body.cast(idx[n.attrs["axis"]], n.dtype)

    def _op_numel(self, n, idx, mask):
        return self.body.cast(size_prod(self.body, n.attrs["sizes"]), n.dtype)

    def _op_uniform(self, n, idx, mask):
        b = self.body
        c = b.cast(self.value(n.inputs[0], (), None), I64)
        return b.emit("uniform", (c, flat_index(b, n.shape, idx)), "float32", seed=int(n.attrs["seed"]))

    def _op_constant(self, n, idx, mask):
        raise LoweringError(f"constant {n.type} has no buffer")

    # ------------------------------------------------------------------ movement
    def _op_reshape(self, n, idx, mask):
        x = n.inputs[0]
        return self.value(x, reshape_index(self.body, x.shape, n.shape, idx), mask)

    def _op_transpose(self, n, idx, mask):
        perm = n.attrs["perm"]
        src = [None] * len(perm)
        for k, p in enumerate(perm):
            src[p] = idx[k]
        return self.value(n.inputs[0], tuple(src), mask)

    def _op_broadcast_to(self, n, idx, mask):
        x = n.inputs[0]
        return self.value(x, broadcast_index(self.body, x.shape, n.shape, idx), mask)

    def _op_slice(self, n, idx, mask):
        b = self.body
        src = tuple(b.iadd(b.iconst(start), b.imul(i, b.iconst(step))) if not isinstance(start, Dim) else i
                    for (start, stop, step), i in zip(n.attrs["slices"], idx))
        return self.value(n.inputs[0], src, mask)

    def _op_pad(self, n, idx, mask):
        b, x = self.body, n.inputs[0]
        local, src = None, []
        for (lo, hi, it), s, i in zip(n.attrs["pads"], x.shape, idx):
            if (lo, hi, it) == (0, 0, 0):
                src.append(i)
                continue
            p = b.isub(i, b.iconst(lo))
            span = (s - 1) * (it + 1) + 1 if s else 0
            ok = b.land(b.emit("greater_equal", (p, b.iconst(0)), "bool"),
                        b.emit("less", (p, b.iconst(span)), "bool"))
            if it:
                ok = b.land(ok, b.emit("equal", (b.imod(p, b.iconst(it + 1)), b.iconst(0)), "bool"))
            local = b.land(local, ok)
            src.append(b.ifloordiv(p, b.iconst(it + 1)))
        v = self.value(x, tuple(src), b.land(mask, local))
        if local is None:
            return v
        fill = b.emit("const", (), n.dtype, value=py_scalar(n.attrs["value"], n.dtype))
        return b.emit("where", (local, v, fill), n.dtype)

    def _op_concatenate(self, n, idx, mask):
        b, ax = self.body, n.attrs["axis"]
        pieces, off = [], 0
        for x in n.inputs:
            k = x.shape[ax]
            i = idx[ax]
            ok = b.land(b.emit("greater_equal", (i, b.iconst(off)), "bool") if off else None,
                        b.emit("less", (i, b.iconst(off + k)), "bool"))
            src = idx[:ax] + (b.isub(i, b.iconst(off)),) + idx[ax + 1:]
            pieces.append((ok, self.value(x, src, b.land(mask, ok))))
            off += k
        res = pieces[-1][1]
        for ok, v in reversed(pieces[:-1]):
            res = b.emit("where", (ok, v, res), n.dtype)
        return res


def _kind(n: Tensor) -> str:
    from nngraph.node import OPS
    return OPS[n.op].kind


def scalar_const(n: Tensor) -> bool:
    """A constant that lowers to an inline `const` (one element)."""
    return n.op == "constant" and n.attrs["value"].array.size == 1


def is_source(n: Tensor) -> bool:
    return n.op in ("placeholder", "parameter", "constant")

