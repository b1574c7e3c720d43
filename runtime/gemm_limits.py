"""The BLAS that target="cpu" calls takes 32-bit sizes (scipy's OpenBLAS, LP64
interface): m, n, k and the leading dimensions must be below 2**31. A larger
product was passed truncated; OpenBLAS refused it with a message on stderr and the
output stayed as it was (zeros, or whatever the buffer held). Such a product is
refused here, per set of sizes and before any native code runs, with an error
that names it. A product with an empty output needs no BLAS call and is allowed."""
from __future__ import annotations

import math

from codegen.llvm.matmul import folds
from nngraph.errors import InputError
from nngraph.types import concrete_shape, is_float
from passes.program import MatmulKernel, contraction_sizes

BLAS_INT_LIMIT = 2**31 - 1


def check_gemm_sizes(program, env) -> None:
    """InputError if a float product of `program` at sizes `env` exceeds the BLAS's ints."""
    for kern in program.schedule:
        if not isinstance(kern, MatmulKernel):
            continue
        if not is_float(program.buffers[kern.out].dtype):
            continue   # integer products are generated loops with 64-bit indices
        m, n = (int(s) for s in concrete_shape((kern.m, kern.n), env))
        k = math.prod(int(s) for s in concrete_shape(contraction_sizes(kern), env))
        rows = m * math.prod(int(s) for s in concrete_shape(kern.batch, env)) if folds(program, kern) else m
        if m * n == 0:
            continue
        big = {name: v for name, v in (("m", m), ("n", n), ("k", k), ("rows", rows)) if v > BLAS_INT_LIMIT}
        if big:
            what = ", ".join(f"{name} = {v}" for name, v in big.items())
            raise InputError(f"matmul {kern.name} ({kern.source or 'product'}): at these sizes {what}, beyond "
                             f"the {BLAS_INT_LIMIT} that the BLAS's 32-bit sizes hold; split the product "
                             "(e.g. into row blocks below 2**31) or use smaller inputs")
