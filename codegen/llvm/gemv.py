"""A float product with one output row or one output column is a matrix-vector
product: BLAS sgemv/dgemv (registered as nngraph_sgemv/dgemv beside the gemms,
blas.py), called where matmul.py would call gemm, with the same operands, offsets
and [lo, hi) parts.

Why: a GEMM with a single row or column reads its matrix once and cannot reuse it,
yet a BLAS gemm still packs that matrix into panels first, as for a real GEMM
(ResNet-50's last Gemm, 1 x 2048 by 2048 x 1000 under MKL: about 1.2 ms as sgemm,
0.3 ms as sgemv on one core of a Xeon). gemv streams the matrix.

In BLAS's column-major terms matmul.py computes Cᵀ = op(B)ᵀ op(A)ᵀ, an M x N
result (M = our output columns, N = our rows). With one row (N = 1) that is
y = op(B)ᵀ x with x = A's only row; with one column (M = 1) it is the transpose,
y = op(A) x with x = B's only column. Either vector is contiguous in memory
whatever its transpose flag, so its increment is 1.

Only where k is a static positive size: reference BLAS's gemv returns without
touching y when k is 0 (gemm scales C by beta), and a symbolic k may be 0. And only
for a matrix beyond the L1 cache (gemv_min_bytes).
"""
from __future__ import annotations

import llvmlite.ir as ir

from codegen.host import host_facts

from .irtypes import F32, F64, I8, I32, VOID


def _static(sizes) -> int | None:
    """The product of `sizes` when all are ints, else None."""
    total = 1
    for s in sizes:
        if not isinstance(s, int):
            return None
        total *= s
    return total


def gemv_min_bytes() -> int:
    """Bytes of the matrix from which a matrix-vector product calls gemv: the host's L1
    data cache (codegen/host.py). A smaller matrix is packed within L1, where packing
    costs little, and its product keeps gemm's rounding (a small model's values stay
    as they were)."""
    return host_facts().l1d


def gemv_side(kern, itemsize: int) -> str:
    """"row" (one output row: vector @ matrix), "column" (one output column: matrix @
    vector) or "" (a GEMM) for a float MatmulKernel with elements of `itemsize` bytes:
    one output row or column in all (batch axes of size one), a static k > 0 and a
    static matrix of at least gemv_min_bytes."""
    k = _static(kern.axes("k"))
    if not k or _static(kern.batch) != 1:
        return ""
    for side, one, other in (("row", "m", "n"), ("column", "n", "m")):
        cols = _static(kern.axes(other))
        if _static(kern.axes(one)) == 1 and cols is not None and k * cols * itemsize >= gemv_min_bytes():
            return side
    return ""


def blas_decl(module, routine: str, dt, layout: str):
    """The module's declaration of nngraph_s<routine> (float32) or nngraph_d<routine>
    (float64), Fortran convention: every argument a pointer, `layout` naming each one's
    type: c a character, i a 32-bit integer, t a number or array of dt."""
    name = ("nngraph_s" if dt == "float32" else "nngraph_d") + routine
    fn = module.globals.get(name)
    if fn is None:
        types = {"c": I8, "i": I32, "t": F32 if dt == "float32" else F64}
        fn = ir.Function(module, ir.FunctionType(VOID, [ir.PointerType(types[c]) for c in layout]), name)
    return fn


def emit_gemv_call(fb, kern, dt, side, gemm_args, slot):
    """Call gemv in place of the gemm whose (swapped, Fortran) arguments are
    `gemm_args` = [ta, tb, M, N, K, alpha, B, lda, A, ldb, beta, C, ldc] (pointers, as
    matmul.py builds them); `slot(type, value, name)` makes an argument slot."""
    b = fb.b
    ta, tb, pm, pn, pk, alpha, pb, lda, pa, ldb, beta, pc, _ = gemm_args
    one = slot(I32, ir.Constant(I32, 1), "inc")
    if side == "row":       # y(M) = op(B)ᵀ (M x K) x(K): B's stored shape is (K x M) when ta = T
        trans = ta
        rows, cols = (pk, pm) if kern.trans_b else (pm, pk)
        args = [trans, rows, cols, alpha, pb, lda, pa, one, beta, pc, one]
    else:                   # y(N) = op(A) (N x K) x(K): A's stored shape is (K x N) unless trans_a
        trans = slot(I8, ir.Constant(I8, ord("N" if kern.trans_a else "T")), "tv")
        rows, cols = (pn, pk) if kern.trans_a else (pk, pn)
        args = [trans, rows, cols, alpha, pa, ldb, pb, one, beta, pc, one]
    b.call(blas_decl(fb.module, "gemv", dt, "ciittititti"), args)
