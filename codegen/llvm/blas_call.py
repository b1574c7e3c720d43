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
THREADS_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)


def gemm_function(addresses: dict, dtype: str):
    """The ctypes function of `addresses`' sgemm (float32) or dgemm (float64)."""
    return GEMM_TYPE(addresses["sgemm" if np.dtype(dtype) == np.float32 else "dgemm"])


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
    refs = [ctypes.byref(x) if not isinstance(x, int) else ctypes.c_void_p(x) for x in args]
    keep = (a, b, c)

    def call():
        assert keep
        gemm(*refs)
    return call
