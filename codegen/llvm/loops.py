"""Function-building context shared by the emitters: an entry block for allocas and
loop-invariant loads (buffer pointers, sizes), counted loops, index arithmetic."""
from __future__ import annotations

from contextlib import contextmanager

import llvmlite.ir as ir

from nngraph.types import Dim
from passes.program import pointer_buffer

from .irtypes import I8P, I64, i64, storage_type


class FnBuilder:
    """One LLVM function with the (i8** bufs, i64* sizes, ...) calling convention.

    Buffer pointers and symbolic sizes are loaded once in the entry block, so the
    loops see them as invariants (no reloads that might alias stores)."""

    def __init__(self, module: ir.Module, name: str, extra_args=(), ret=None, program=None, symbols=()):
        self.module = module
        ret = ret or ir.VoidType()
        self.fn = ir.Function(module, ir.FunctionType(ret, [ir.PointerType(I8P), ir.PointerType(I64)] + list(extra_args)), name)
        self.fn.linkage = "internal"
        # never inlined into the entry: the entry calls each kernel once (and hands it
        # to threads by pointer), so inlining saved nothing at run time but made LLVM
        # optimise and emit every kernel twice, inside one huge function (LeNet step:
        # 1.15 -> 0.69 s of LLVM time)
        self.fn.attributes.add("noinline")
        self.bufs_arg, self.sizes_arg = self.fn.args[0], self.fn.args[1]
        self.args = self.fn.args[2:]
        self.entry = self.fn.append_basic_block("entry")
        self.eb = ir.IRBuilder(self.entry)
        self.b = ir.IRBuilder(self.fn.append_basic_block("body"))
        self._first = self.b.block
        self.program = program
        self.symbols = list(symbols)
        self._ptrs = {}
        self._bases = {}        # id(typed root pointer a part's pointer is offset from) -> root
        self._sizes = {}

    def unoptimised(self):
        """Mark a glue function whose run time is the calls it makes (one BLAS call's
        arguments, a thread's start and join) so that LLVM leaves it as written
        (optnone: no optimisation passes, the fast instruction selector). The O3 passes
        spent 2-4 ms on each such function (a LeNet step has 16); unoptimised, a loop of
        per-example BLAS calls runs ~10 more instructions per call, nothing next to a call."""
        mark_unoptimised(self.fn)

    def finish(self):
        self.eb.branch(self._first)
        self._alias_scopes()
        return self.fn

    def _alias_scopes(self):
        """Scoped no-alias metadata: every load and store through a buffer pointer gets
        its root buffer's scope and `noalias` with the other roots the function touches.
        Sound because distinct roots never share memory while one kernel runs (the
        memory plan gives temps alive at the same schedule position distinct slots;
        inputs, params, outputs and updates are distinct arrays), and it spares the
        vectoriser its runtime overlap checks (which made it give up on short rows)."""
        if not self._ptrs:
            return
        root_of = {id(p): self.program.root(b) for b, p in self._ptrs.items()}
        root_of.update(self._bases)     # a part's pointer is a GEP of its root's pointer
        bases = set(root_of)
        uses = []
        for blk in self.fn.blocks:
            for ins in blk.instructions:
                if isinstance(ins, (ir.LoadInstr, ir.StoreInstr)):
                    ptr = ins.operands[0] if isinstance(ins, ir.LoadInstr) else ins.operands[1]
                    while isinstance(ptr, ir.GEPInstr):
                        ptr = ptr.operands[0]
                    if id(ptr) in bases:
                        uses.append((ins, root_of[id(ptr)]))
        roots = sorted({r for _, r in uses})
        if len(roots) < 2:
            return
        m = self.module
        domain = m.add_metadata([ir.MetaDataString(m, f"nngraph.{self.fn.name}")])
        scope = {r: m.add_metadata([ir.MetaDataString(m, f"nngraph.{self.fn.name}.b{r}"), domain]) for r in roots}
        own = {r: m.add_metadata([scope[r]]) for r in roots}
        others = {r: m.add_metadata([scope[q] for q in roots if q != r]) for r in roots}
        for ins, r in uses:
            ins.set_metadata("alias.scope", own[r])
            ins.set_metadata("noalias", others[r])

    def alloca(self, t, name=""):
        return self.eb.alloca(t, name=name)

    def size(self, s):
        """A size (int or Dim) as an i64 value."""
        if isinstance(s, Dim):
            v = self._sizes.get(s.name)
            if v is None:
                slot = self.symbols.index(s.name)
                v = self.eb.load(self.eb.gep(self.sizes_arg, [i64(slot)]), name=f"size_{s.name}")
                self._sizes[s.name] = v
            return v
        return i64(int(s))

    def ptr(self, buf_id: int):
        """The typed base pointer of buffer `buf_id`."""
        p = self._ptrs.get(buf_id)
        if p is None:
            buf = self.program.buffers[buf_id]
            slot = pointer_buffer(self.program.buffers, buf_id)   # a view is its root's memory
            raw = self.eb.load(self.eb.gep(self.bufs_arg, [i64(slot)]), name=f"p_{buf.name}"[:40])
            p = self.eb.bitcast(raw, ir.PointerType(storage_type(buf.dtype)))
            offset = self.program.offset(buf_id)   # a part of a packed buffer starts inside it
            if offset:
                self._bases[id(p)] = self.program.root(buf_id)
                p = self.eb.gep(p, [i64(offset)], inbounds=True)
            self._ptrs[buf_id] = p
        return p

    def numel(self, shape):
        b = self.b
        n = i64(1)
        for s in shape:
            n = b.mul(n, self.size(s), flags=["nsw"]) if not (isinstance(s, int) and s == 1) else n
        return n

    def linear(self, shape, index):
        """Row-major offset of `index` (i64 values) in a buffer of `shape`."""
        b = self.b
        if not shape:
            return i64(0)
        off = index[0]
        for s, ix in zip(shape[1:], index[1:]):
            off = b.add(b.mul(off, self.size(s), flags=["nsw"]), ix, flags=["nsw"])
        return off

    def element_ptr(self, buf_id, index):
        buf = self.program.buffers[buf_id]
        return self.b.gep(self.ptr(buf_id), [self.linear(buf.shape, index)], inbounds=True)

    @contextmanager
    def loop(self, lo, hi, name="i"):
        """for (i = lo; i < hi; i++) — yields i; the builder ends after the loop."""
        b = self.b
        pre = b.block
        head = self.fn.append_basic_block(f"{name}_head")
        body = self.fn.append_basic_block(f"{name}_body")
        end = self.fn.append_basic_block(f"{name}_end")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name=name)
        i.add_incoming(lo, pre)
        b.cbranch(b.icmp_signed("<", i, hi), body, end)
        b.position_at_end(body)
        yield i
        nxt = b.add(i, i64(1), flags=["nsw", "nuw"])
        i.add_incoming(nxt, b.block)
        b.branch(head)
        b.position_at_end(end)

    @contextmanager
    def nest(self, sizes, prefix="i", first=None):
        """Nested loops over `sizes` (outermost first); yields the index list.
        `first` = (lo, hi) replaces the bounds of the outermost loop."""
        idx = []
        stack = []
        for d, s in enumerate(sizes):
            lo, hi = (first if (d == 0 and first is not None) else (i64(0), self.size(s)))
            cm = self.loop(lo, hi, f"{prefix}{d}")
            idx.append(cm.__enter__())
            stack.append(cm)
        yield idx
        for cm in reversed(stack):
            cm.__exit__(None, None, None)


def mark_unoptimised(fn: ir.Function) -> None:
    """optnone (which LLVM accepts only together with noinline) on `fn`."""
    fn.attributes.add("noinline")
    fn.attributes.add("optnone")
