"""Calling a BLAS's Fortran gemm from Python on row-major NumPy arrays, as the
generated code does (matmul.py): for checking a library (mkl.py), timing candidates
(blas_choice.py) and timing convolution layouts (runtime/conv_choice.py).

BLAS is column-major: a row-major C = op(A) op(B) is, read column-major,
Cᵀ = op(B)ᵀ op(A)ᵀ, so gemm gets the operands swapped.
"""
from __future__ import annotations

import ctypes

import numpy as np

GEMM_TYPE = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))
GEMV_TYPE = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 11))
THREADS_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)


def gemm_function(addresses: dict, dtype: str):
    """The ctypes function of `addresses`' sgemm (float32) or dgemm (float64)."""
    return GEMM_TYPE(addresses["sgemm" if np.dtype(dtype) == np.float32 else "dgemm"])


def gemv_function(addresses: dict, dtype: str):
    """The ctypes function of `addresses`' sgemv (float32) or dgemv (float64)."""
    return GEMV_TYPE(addresses["sgemv" if np.dtype(dtype) == np.float32 else "dgemv"])


def threads_function(addresses: dict):
    """`int f(int n)`: n BLAS threads for the calling thread's calls from now on."""
    return THREADS_TYPE(addresses["blas_threads_local"])


def row_major_gemm(gemm, a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """A closure computing c = alpha op(a) @ op(b) + beta c in place (c C-contiguous,
    a and b C-contiguous matrices); it keeps the arrays its pointers point into."""
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    scalar = ctypes.c_float if c.dtype == np.float32 else ctypes.c_double
    i = ctypes.c_int
    args = [ctypes.c_char(b"T" if trans_b else b"N"), ctypes.c_char(b"T" if trans_a else b"N"), i(n), i(m), i(k),
            scalar(alpha), b.ctypes.data, i(max(1, k if trans_b else n)), a.ctypes.data,
            i(max(1, m if trans_a else k)), scalar(beta), c.ctypes.data, i(max(1, n))]
    return _bound(gemm, args, (a, b, c))


def _bound(routine, args, arrays):
    """A closure calling `routine` with pointers to `args` (ints are addresses); it
    keeps `arrays`, whose memory the addresses point into."""
    refs = [ctypes.byref(x) if not isinstance(x, int) else ctypes.c_void_p(x) for x in args]

    def call():
        assert arrays
        routine(*refs)
    return call


def row_major_gemv(gemv, a, x, y, trans=False, alpha=1.0, beta=0.0):
    """A closure computing y = alpha op(a) @ x + beta y in place (a C-contiguous, x and
    y contiguous vectors): a row-major matrix is its transpose column-major, so gemv
    gets the other transpose flag."""
    rows, cols = a.shape
    scalar = ctypes.c_float if y.dtype == np.float32 else ctypes.c_double
    i = ctypes.c_int
    args = [ctypes.c_char(b"N" if trans else b"T"), i(cols), i(rows), scalar(alpha), a.ctypes.data,
            i(max(1, cols)), x.ctypes.data, i(1), scalar(beta), y.ctypes.data, i(1)]
    return _bound(gemv, args, (a, x, y))


def wrong_product(addresses: dict) -> str | None:
    """Small products through `addresses`' sgemm and dgemm, and its sgemv and dgemv,
    every transpose, alpha and beta, against NumPy: None when all agree, else which
    one did not (a library that loads but computes wrong, or whose symbols are not the
    functions named, is never used: mkl.py, blas.py)."""
    from nngraph.types import FLOAT_DTYPES
    rng = np.random.default_rng(0)
    for dtype in FLOAT_DTYPES:
        gemm = gemm_function(addresses, dtype)
        for ta in (False, True):
            for tb in (False, True):
                a = rng.standard_normal((5, 7) if ta else (7, 5)).astype(dtype)
                b = rng.standard_normal((3, 5) if tb else (5, 3)).astype(dtype)
                c = np.full((7, 3), 0.5, dtype)
                row_major_gemm(gemm, a, b, c, ta, tb, alpha=2.0, beta=1.0)()
                want = 2.0 * ((a.T if ta else a).astype(np.float64) @ (b.T if tb else b)) + 0.5
                if not np.allclose(c, want, rtol=1e-4, atol=1e-4):
                    return f"a {dtype} product wrong (transposes {ta}, {tb})"
        wrong = _wrong_gemv(addresses, dtype, rng)
        if wrong:
            return wrong
    return None


def _wrong_gemv(addresses: dict, dtype, rng) -> str | None:
    gemv = gemv_function(addresses, dtype)
    for trans in (False, True):
        a = rng.standard_normal((7, 5)).astype(dtype)
        x = rng.standard_normal(7 if trans else 5).astype(dtype)
        y = np.full(5 if trans else 7, 0.5, dtype)
        row_major_gemv(gemv, a, x, y, trans, alpha=2.0, beta=1.0)()
        want = 2.0 * ((a.T if trans else a).astype(np.float64) @ x) + 0.5
        if not np.allclose(y, want, rtol=1e-4, atol=1e-4):
            return f"a {dtype} matrix-vector product wrong (transpose {trans})"
    return None
