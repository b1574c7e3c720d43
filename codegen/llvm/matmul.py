"""MatmulKernel -> `void mm(bufs, sizes)`: BLAS sgemm/dgemm through the function
pointers scipy.linalg.cython_blas exports (registered as nngraph_sgemm/dgemm), one
call per batch entry (or one call when the batch folds into M); integer matmul as
a generated loop; a product with one output row or column calls gemv instead
(gemv.py). The epilogue is a separate loop function (kernel.py) over the
output, run after the product, reading it with `acc`.

BLAS is column-major: a row-major C = op(A) op(B) is, read column-major,
C^T = op(B)^T op(A)^T, so we call gemm with the operands swapped.

A call below BLAS_THREAD_WORK multiply-adds runs on one BLAS thread (the count is
set to one before it and back to NNGRAPH_BLAS_THREADS after); bigger ones use them all,
unless every call runs on one (blas.threads_per_call: nngraph's worker pool splits the
products), then every call is made on one.

The function's [lo, hi) range runs over the output rows (split_axis), or, built with
columns=True, over the output columns: part C[:, lo:hi] = A @ B[:, lo:hi] through the
leading dimensions (entry.py picks one at run time: the longer axis, so each part
re-packs only the smaller operand).
"""
from __future__ import annotations

import llvmlite.ir as ir

from codegen.tuning import tuning
from nngraph.types import is_float, np_dtype
from passes.program import MatmulKernel

from . import blas
from .conv_direct import emit_direct_function
from .gemv import blas_decl, emit_gemv_call, gemv_side
from .irtypes import I8, I8P, I32, I64, i64, value_type
from .loops import FnBuilder

# multiply-adds of one BLAS call below which it runs on one BLAS thread, derived from
# the host (codegen/tuning.py). Why: waking BLAS threads for small calls cost more
# than they saved (CNN b64 step: 3.7 ms with two-thread calls everywhere, 2.1 ms with
# one thread for all); the MLP 784-512-256-10 step's 17M-51M products gain from two.
BLAS_THREAD_WORK = tuning().blas_thread_work


def _is_one(s) -> bool:
    return isinstance(s, int) and s == 1


def _batch_offsets(fb, kern, role, bidx, batch):
    """Element offset of operand `role`'s ("a" or "b") matrix for output batch index
    `bidx`, broadcasting batch axes of size 1 (or missing)."""
    b = fb.b
    shape = fb.program.buffers[getattr(kern, role)].shape
    nb = len(shape) - kern.matrix_ndim(role)
    off = i64(0)
    stride = fb.numel(shape[nb:])
    for d in range(nb - 1, -1, -1):
        od = len(batch) - nb + d
        if not _is_one(shape[d]) or _is_one(batch[od]):
            off = b.add(off, b.mul(bidx[od], stride))
        stride = b.mul(stride, fb.size(shape[d]))
    return off


def folds(program, kern: MatmulKernel) -> bool:
    """True when the batch folds into M: one GEMM of (batch*M) rows against a B
    that is the same matrix for every batch entry."""
    a, b = program.buffers[kern.a].shape, program.buffers[kern.b].shape
    a_batch = a[:len(a) - kern.matrix_ndim("a")]
    b_batch = b[:len(b) - kern.matrix_ndim("b")]
    return bool(not kern.trans_a and kern.batch and all(_is_one(s) for s in b_batch)
                and tuple(a_batch) == tuple(kern.batch))


def split_axis(program, kern: MatmulKernel) -> tuple:
    """The sizes whose product is the axis the function's [lo, hi) range runs over:
    output rows (times the batch when it folds), else the first batch axis."""
    dt = program.buffers[kern.out].dtype
    if is_float(dt) and folds(program, kern):
        return tuple(kern.batch) + kern.axes("m")
    return (kern.batch[0],) if kern.batch else kern.axes("m")


def splits_columns(program, kern: MatmulKernel) -> bool:
    """True when the product is one BLAS call (float, not batched or batch folded
    into M), so it may also be cut along its output columns."""
    return (kern.window is None and is_float(program.buffers[kern.out].dtype)
            and (folds(program, kern) or not kern.batch))


def emit_matmul_function(module, name, program, symbols, kern: MatmulKernel, columns=False):
    """`void mm(bufs, sizes, lo, hi, extra)`: the product for split_axis range [lo, hi),
    or with columns=True (splits_columns only) for output columns [lo, hi). A direct
    convolution (kern.window) runs conv_direct.py's kernel over its rows instead."""
    if kern.window is not None:
        return emit_direct_function(module, name, program, symbols, kern)
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=symbols)
    dt = program.buffers[kern.out].dtype
    for x in (kern.a, kern.b):
        if program.buffers[x].dtype != dt:
            raise NotImplementedError(f"matmul {kern.name}: operand dtypes differ "
                                      f"({program.buffers[x].dtype} vs {dt}); the lowering must cast first")
    if is_float(dt):
        fb.unoptimised()        # argument set-up around BLAS calls
        _emit_gemm(fb, kern, dt, columns)
    else:
        _emit_int_loops(fb, kern, dt)
    fb.b.ret_void()
    return fb.finish()


def _gemm_decl(module, dt):
    return blas_decl(module, "gemm", dt, "cciiittititti")


def _emit_gemm(fb: FnBuilder, kern: MatmulKernel, dt, columns=False):
    b = fb.b
    t = value_type(dt)
    gemm = _gemm_decl(fb.module, dt)

    def slot(ty, v, name):
        p = fb.alloca(ty, name=name)
        b.store(v, p)
        return p

    def i32(v):
        return b.trunc(v, I32)

    def imax1(v):
        return b.select(b.icmp_signed("<", v, i64(1)), i64(1), v)

    m, n, k = (fb.numel(kern.axes(d)) for d in "mnk")
    lo, hi, _ = fb.args
    fold = folds(fb.program, kern)
    split_rows = fold or not kern.batch
    if columns:
        rows, cols = fb.numel(split_axis(fb.program, kern)), b.sub(hi, lo)
    else:
        rows, cols = (b.sub(hi, lo) if split_rows else m), n
    # operands as BLAS sees them (swapped): first = our B, second = our A
    ta = slot(I8, ir.Constant(I8, ord("T" if kern.trans_b else "N")), "ta")
    tb = slot(I8, ir.Constant(I8, ord("T" if kern.trans_a else "N")), "tb")
    pm, pn, pk = slot(I32, i32(cols), "m"), slot(I32, i32(rows), "n"), slot(I32, i32(k), "k")
    lda = slot(I32, i32(imax1(k if kern.trans_b else n)), "lda")
    ldb = slot(I32, i32(imax1(m if kern.trans_a else k)), "ldb")
    ldc = slot(I32, i32(imax1(n)), "ldc")
    alpha = slot(t, ir.Constant(t, float(kern.alpha)), "alpha")
    beta = slot(t, ir.Constant(t, float(kern.beta)), "beta")
    pa, pb_, pc = fb.ptr(kern.a), fb.ptr(kern.b), fb.ptr(kern.out)
    vector = gemv_side(kern, np_dtype(dt).itemsize)

    def call(bidx):
        oa, ob, oc = _offsets(fb, kern, bidx, columns, (m, n, k))
        args = [ta, tb, pm, pn, pk, alpha, b.gep(pb_, [ob]), lda, b.gep(pa, [oa]), ldb, beta, b.gep(pc, [oc]), ldc]
        if vector:
            emit_gemv_call(fb, kern, dt, vector, args, slot)
        else:
            b.call(gemm, args)

    # one BLAS thread for a small product: waking OpenBLAS's workers costs more than
    # they save there, and they then spin on the cores our own threads need
    # (set back to the configured count, not to the previous one: two threads making
    # small calls at once would otherwise leave the count at one)
    per_call = b.mul(b.mul(rows, cols), k)
    small = b.icmp_signed("<", per_call, i64(BLAS_THREAD_WORK))
    # a part of a product split across our own threads (entry.py's _launch) runs on one
    # BLAS thread: each of our threads already has a core, and BLAS workers woken on
    # top of them oversubscribe the cores (xs@W over (T*N=1600, 256, 1024) on 2 cores:
    # 5-10 ms with two BLAS threads per part, 2.9 ms with one)
    whole = n if columns else fb.numel(split_axis(fb.program, kern))
    small = b.or_(small, b.icmp_signed("<", b.sub(hi, lo), whole))
    # every call on one BLAS thread where that is the rule (blas.threads_per_call: our
    # worker pool splits the products); nothing to set where the BLAS has one thread
    configured = blas.configured_threads()
    if blas.threads_per_call() == 1:
        small = ir.Constant(ir.IntType(1), configured > 1)
    set_threads = _threads_decl(fb.module)
    with b.if_then(small):
        b.call(set_threads, [ir.Constant(I32, 1)])
    if split_rows or columns:
        with fb.b.if_then(b.icmp_signed("<", lo, hi)):
            call(None)
    else:
        with fb.nest(kern.batch, "b", first=(lo, hi)) as bidx:
            call(bidx)
    with b.if_then(small):
        b.call(set_threads, [ir.Constant(I32, configured)])


def _offsets(fb, kern, bidx, columns, mnk):
    """Element offsets of A, B and C for one call: output columns [lo, hi) (columns),
    rows [lo, hi) of the (folded) product (bidx None), or batch entry bidx."""
    b = fb.b
    lo = fb.args[0]
    m, n, k = mnk
    if columns:      # B's columns lo.. (its rows when stored transposed), C's columns lo..
        return i64(0), (b.mul(lo, k) if kern.trans_b else lo), lo
    if bidx is None:
        return (lo if kern.trans_a else b.mul(lo, k)), i64(0), b.mul(lo, n)
    return (_batch_offsets(fb, kern, "a", bidx, kern.batch), _batch_offsets(fb, kern, "b", bidx, kern.batch),
            b.mul(fb.linear(kern.batch, bidx), b.mul(m, n)))


def _threads_decl(module):
    fn = module.globals.get("nngraph_blas_threads_local")
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(I32, [I32]), "nngraph_blas_threads_local")
    return fn


def _emit_int_loops(fb: FnBuilder, kern: MatmulKernel, dt):
    """out[b, i, j] = alpha * sum_k A[b, i, k] B[b, k, j] + beta * out (integers wrap)."""
    if any(isinstance(s, tuple) for s in (kern.m, kern.n, kern.k)):
        raise NotImplementedError(f"matmul {kern.name}: integer products over matrix dimensions "
                                  "of several axes; the lowering makes those only for float convolutions")
    b = fb.b
    t = value_type(dt)
    pa, pb_, pc = fb.ptr(kern.a), fb.ptr(kern.b), fb.ptr(kern.out)
    m, n, k = fb.size(kern.m), fb.size(kern.n), fb.numel(kern.axes("k"))
    acc = fb.alloca(t, "acc")
    with fb.nest(tuple(kern.batch) + (kern.m, kern.n), "ij", first=fb.args[:2]) as idx:
        bidx, i, j = idx[:-2], idx[-2], idx[-1]
        oa = _batch_offsets(fb, kern, "a", bidx, kern.batch) if kern.batch else i64(0)
        ob = _batch_offsets(fb, kern, "b", bidx, kern.batch) if kern.batch else i64(0)
        b.store(ir.Constant(t, 0), acc)
        with fb.loop(i64(0), k, "kk") as kk:
            ia = b.add(oa, b.add(b.mul(kk, m), i) if kern.trans_a else b.add(b.mul(i, k), kk))
            ib = b.add(ob, b.add(b.mul(j, k), kk) if kern.trans_b else b.add(b.mul(kk, n), j))
            prod = b.mul(b.load(b.gep(pa, [ia])), b.load(b.gep(pb_, [ib])))
            b.store(b.add(b.load(acc), prod), acc)
        oc = b.add(b.mul(fb.linear(kern.batch, bidx) if kern.batch else i64(0), b.mul(m, n)),
                   b.add(b.mul(i, n), j))
        cp = b.gep(pc, [oc])
        v = b.mul(b.load(acc), ir.Constant(t, int(kern.alpha)))
        if kern.beta:
            v = b.add(v, b.mul(b.load(cp), ir.Constant(t, int(kern.beta))))
        b.store(v, cp)

