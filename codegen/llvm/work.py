"""A kernel's work in the units the thread thresholds count (codegen/tuning.py):
points x body instructions of a loop kernel, multiply-adds of a product. One home
for the estimate that decides whether a kernel, a product or a whole loop is cut
across threads (entry.py, loop_rows.py)."""
from __future__ import annotations

from nngraph.types import Dim
from passes.program import MatmulKernel

from .irtypes import i64


def static_work(outer, stages):
    """(int factor, symbolic sizes) of the kernel's iteration count x body length."""
    total, syms = 0, []
    for st in stages:
        n = max(1, len(st.body))
        sy = []
        for s in tuple(outer) + tuple(st.inner):
            if isinstance(s, Dim):
                sy.append(s)
            else:
                n *= s
        total = max(total, n)
        syms = sy if len(sy) > len(syms) else syms
    return total, syms


def static_product(sizes):
    """(int factor, symbolic sizes) of a product of sizes."""
    factor, syms = 1, []
    for s in sizes:
        if isinstance(s, Dim):
            syms.append(s)
        else:
            factor *= s
    return factor, syms


def product_sizes(kern: MatmulKernel) -> tuple:
    """Every axis of a product's multiply-adds: batch, m, n, k."""
    return tuple(kern.batch) + kern.axes("m") + kern.axes("n") + kern.axes("k")


def kernel_work(fb, kern):
    """The kernel's work at run time (an i64 value in fb's function): its static factor
    times its symbolic sizes."""
    factor, syms = static_product(product_sizes(kern)) if isinstance(kern, MatmulKernel) \
        else static_work(kern.outer, kern.stages)
    return fb.b.mul(fb.numel(syms), i64(factor))
