"""Graph -> Program: buffers, kernels (fused per passes/fusion.py), schedule, memory plan.

How each op lowers lives in passes/lower/ (one module per op family, one registry,
see passes/lower/__init__.py); this module is the entry point.

Kernels are formed from the materialised values in topological order. A value
starts a kernel, or joins an earlier LoopKernel as a further stage when that is
legal and useful:

- a reduction joins a kernel whose outer domain equals its kept sizes (a row
  block): reduce max, reduce sum, ... over one row, one stage each; independent
  reductions over the same inner domain share one stage;
- an elementwise value joins a kernel whose reductions it reads at the kernel's
  outer point (softmax's output reads the row max and row sum), or whose outer
  domain is its whole shape (a value and its gradient in one loop);
- never when it would read a buffer that kernel writes, or when the kernels'
  dependencies would form a cycle.

Reduction results that other kernels read are stored by a final map stage with
an empty inner domain (which also holds epilogues on the reduced shape, e.g. an
SGD step on a bias: b - lr * sum(g, 0)). Matmuls and convolutions become
MatmulKernels whose epilogue stores their frontier values. `Program.stats["fusion"]`
says why each value was materialised and which values each kernel computes.
"""
from __future__ import annotations

from .lower import LoweringContext
from .program import Program


def to_program(graph, opt_level: int = 2) -> Program:
    """Lower an (optimised) Graph to a Program: fusion (opt_level >= 1; 0 = one kernel
    per op), schedule and memory plan."""
    if opt_level not in (0, 1, 2):
        raise ValueError(f"opt_level must be 0, 1 or 2, got {opt_level!r}")
    return LoweringContext(graph, opt_level).lower()
