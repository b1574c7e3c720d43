"""A ScanLoop whose steps are independent across rows (passes/loop_rows.py) run as
one function over a row range, `void rows(bufs, sizes, lo, hi, extra)`, split
across threads once for the whole loop: each thread runs every step of its rows
[lo, hi), with a pointer array of its own (the step buffers' addresses change per
step, and threads are at different steps), each body kernel's function called on
[lo, hi) of its outer axis 0 (a product on those output rows, on one BLAS thread)
and the carries copied row range by row range.

Why: split per step, an LSTM's h @ W_hh (T=50, N=32: 8.4M multiply-adds per step)
took as long on two threads as on one (131-139 us per step against 136 us, Xeon,
MKL): each step hands a part to a worker and waits for it, and the step's pointwise
work between the products ran on one core. Cut by rows there is one hand-off per
loop, and the pointwise work is split too (T=50, N=32 training step: 24.6 -> 19.0
ms; T=100, N=64: 93 -> 66 ms).

Chosen where it is exact (independent_rows), the loop's work over all steps is
above the loop split size (codegen/tuning.py: what pays a thread's start), the BLAS
keeps its speed on a thread's rows (ROW_BLASES), and the
right operands of the body's products fit the host's last-level cache: every thread
reads all of them at every step (a cut by columns reads each part once per step).
From a cache that costs little next to the product (with 16 rows per thread, 4
multiply-adds per byte of weights: an LSTM's W_hh of 1 MiB per step is read at L2 or
L3 speed while its 16 x 1024 x 256 product takes ~70 us), but from memory it would
double the traffic of a product that streams its weights. Below the work threshold
the same function runs over all rows on the calling thread. Otherwise the per-step
loop (loop.py) runs.
"""
from __future__ import annotations

import llvmlite.ir as ir

from codegen.host import host_facts
from nngraph.types import Dim, np_dtype
from passes.loop import copies_after_step
from passes.loop_rows import independent_rows
from passes.program import LoopKernel, MatmulKernel

from . import blas
from .irtypes import I8P, I64, i64
from .kernel import emit_loop_function
from .loop import copy_carry_inits, emit_memcpy, pointer_slot, private_pointers, set_step_slices
from .loops import FnBuilder
from .matmul import emit_matmul_function
from .work import kernel_work, static_product

NULL = ir.Constant(I8P, None)


# the BLASes whose products on a thread's rows keep their speed: per thread the product
# has half the rows (an LSTM step at N=32: 16), where OpenBLAS's sgemm runs at 56
# GFLOP/s against 86 on a half of the columns with all 32 rows (MKL: 110-122 against
# 123-133; Xeon, AVX-512, one thread), so with OpenBLAS the step-by-step loop's
# column parts win (T=50, N=32 training step: 36 ms per step, by rows 46 ms)
ROW_BLASES = ("mkl",)


def rows_plan(program, loop):
    """The row size when `loop` runs by row ranges (see above), else None."""
    rows = independent_rows(program, loop)
    if rows is None or blas.chosen_blas() not in ROW_BLASES:
        return None
    weights = 0
    for k in loop.body:
        if isinstance(k, MatmulKernel):
            buf = program.buffers[k.b]
            if any(isinstance(s, Dim) for s in buf.shape):
                return None
            weights += static_product(buf.shape)[0] * np_dtype(buf.dtype).itemsize
    return rows if weights <= host_facts().l3 else None


def emit_scan_by_rows(fb, loop, base: str, rows, threshold: int, parts_of, split) -> None:
    """The loop at fb's position, by row ranges. When the loop's work is >= threshold
    and there are two rows or more, `split(f, n0, parts, extra)` runs f on `parts`
    threads (`parts_of(work)` of them), each claiming row ranges from a shared counter
    until none is left (_claiming_function); else the rows function runs over all
    rows here."""
    b = fb.b
    copy_carry_inits(fb, loop)
    part = _rows_function(fb.module, f"{base}_rows", fb.program, fb.symbols, loop)
    n0 = fb.size(rows)
    work = b.mul(_step_work(fb, loop), fb.size(loop.length))
    big = b.and_(b.icmp_signed(">=", work, i64(threshold)), b.icmp_signed(">=", n0, i64(2)))
    with b.if_else(big) as (then, otherwise):
        with then:
            parts = parts_of(work)          # no more ranges than rows: an empty range
            parts = b.select(b.icmp_signed(">", parts, n0), n0, parts)  # still runs T steps
            claims = fb.alloca(ir.ArrayType(I64, 2), "row_claims")
            counter, count = (b.gep(claims, [i64(0), i64(j)]) for j in (0, 1))
            b.store(i64(0), counter)
            b.store(parts, count)
            claiming = _claiming_function(fb.module, f"{base}_claim", fb.program, fb.symbols, rows, part)
            split(claiming, n0, parts, b.bitcast(claims, I8P))
        with otherwise:
            b.call(part, [fb.bufs_arg, fb.sizes_arg, i64(0), n0, NULL])


def _claiming_function(module, name, program, syms, rows, part):
    """`void f(bufs, sizes, lo, hi, claims)`: claims = {next range, ranges} (i64);
    takes range c = next++ while c < ranges and runs `part` on rows
    [c * R / ranges, (c + 1) * R / ranges). Why not each thread its own [lo, hi): a
    worker that starts late (its core busy with another process) leaves its range
    to whichever thread is free, so a split loop never waits for a thread that has
    not started; the split has exactly the ranges a fixed one would have."""
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=syms)
    fb.unoptimised()
    b = fb.b
    claims = b.bitcast(fb.args[2], I64.as_pointer())
    counter, count = b.gep(claims, [i64(0)]), b.load(b.gep(claims, [i64(1)]))
    n0 = fb.size(rows)
    head, body, done = (fb.fn.append_basic_block(n) for n in ("claim", "run", "done"))
    b.branch(head)
    b.position_at_end(head)
    c = b.atomic_rmw("add", counter, i64(1), "seq_cst")
    b.cbranch(b.icmp_signed("<", c, count), body, done)
    b.position_at_end(body)
    lo = b.sdiv(b.mul(c, n0), count)
    hi = b.sdiv(b.mul(b.add(c, i64(1)), n0), count)
    b.call(part, [fb.bufs_arg, fb.sizes_arg, lo, hi, NULL])
    b.branch(head)
    b.position_at_end(done)
    b.ret_void()
    return fb.finish()


def _step_work(fb, loop):
    """One step's work: the sum of its body kernels' (work.py, as entry.py counts a
    kernel on its own)."""
    total = i64(0)
    for k in loop.body:
        total = fb.b.add(total, kernel_work(fb, k))
    return total


def _rows_function(module, name, program, syms, loop):
    """`void f(bufs, sizes, lo, hi, extra)`: every step of the loop on rows [lo, hi)."""
    fns = [_kernel_functions(module, f"{name}{n}_{k.name}"[:60], program, syms, k) for n, k in enumerate(loop.body)]
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=syms)
    fb.unoptimised()        # calls and address arithmetic only
    private_pointers(fb, max(program.buffers) + 1)
    b = fb.b
    lo, hi, _ = fb.args
    length = fb.size(loop.length)
    with fb.loop(i64(0), length, "t") as t:
        set_step_slices(fb, loop, t, length)
        for group in fns:
            for f in group:
                b.call(f, [fb.bufs_arg, fb.sizes_arg, lo, hi, NULL])
        for state, nxt in copies_after_step(fb.program, loop):
            row = _row_bytes(fb, state)
            src = b.gep(b.load(pointer_slot(fb, nxt)), [b.mul(lo, row)])
            dst = b.gep(b.load(pointer_slot(fb, state)), [b.mul(lo, row)])
            emit_memcpy(fb.module, b, dst, src, b.mul(b.sub(hi, lo), row))
    b.ret_void()
    return fb.finish()


def _row_bytes(fb, buf_id):
    buf = fb.program.buffers[buf_id]
    return fb.b.mul(fb.numel(buf.shape[1:]), i64(np_dtype(buf.dtype).itemsize))


def _kernel_functions(module, name, program, syms, k) -> list:
    """The functions that run body kernel k on a range of its outer axis 0 (a
    product: its output rows, then its epilogue on the same rows)."""
    if isinstance(k, LoopKernel):
        return [emit_loop_function(module, name, program, syms, tuple(k.outer), list(k.stages), unit_lead=True)]
    fns = [emit_matmul_function(module, name, program, syms, k)]
    if k.epilogue is not None:
        fns.append(emit_loop_function(module, name[:56] + "_epi", program, syms, k.epilogue_domain(),
                                      [k.epilogue], acc_buffer=k.out))
    return fns
