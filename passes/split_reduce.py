"""Split reductions: which kernels may be cut into chunks, decided once for both backends.

A kernel whose rows are few and long (sum(x) over a whole tensor: one row) keeps one
thread or one GPU program busy. Both backends then reduce chunks of the inner domain
separately into partials and fold the partials afterwards ("part + combine"). Which
stages may run per chunk, and how each accumulator's partials fold, depends on the
Program only, so it is decided here (`split_plan`); the backends read the plan:

- codegen/llvm/entry.py cuts the first chunked stage's first inner axis into one
  range per thread (where that stage is a full reduction of sum/max/min) and its
  finish function folds the partials, then runs the later stages;
- codegen/triton/loop_kernel.py runs all chunked stages in a `_part` launch and the
  fold plus the later stages in a `_combine` launch (where every stage with an inner
  domain is chunked).

What stays with each backend is what only it can know: how many chunks (chosen at
run time from the dynamic sizes: one per thread above THREAD_WORK on the CPU,
module._split on the GPU) and how a chunk is cut (a range of the first inner axis, or
of the flat inner index).
"""
from __future__ import annotations

from dataclasses import dataclass

from nngraph.semantics import partial_combine


@dataclass(frozen=True)
class SplitAccumulator:
    """One reduction slot of a chunked stage: stage `stage`'s reduce[slot], of `kind`
    over `dtype`; its partials fold with the reduction `combine`."""
    stage: int
    slot: int
    kind: str
    dtype: str
    combine: str


@dataclass(frozen=True)
class SplitPlan:
    """Stages 0..chunked-1 may each run over chunks of their inner domain, their
    accumulators combined afterwards; stages chunked.. (the finishing stages) run
    once, after the combine, reading the combined results."""
    chunked: int
    accumulators: tuple

    def finishing(self, kernel) -> list:
        return list(kernel.stages[self.chunked:])


def _chunkable(stage) -> bool:
    """A stage that can run over chunks of its inner domain: it has one, reads no other
    stage's result (that would need the whole row first; only what the stage stores or
    reduces counts) and reduces only with kinds whose partials fold."""
    if not stage.inner:
        return False
    if any(i.op == "result" for i in stage.compact().body):
        return False
    return all(partial_combine(r[0]) is not None for r in stage.reduce)


def split_plan(kernel) -> SplitPlan | None:
    """The split plan of a LoopKernel: its longest prefix of chunkable stages, or None
    where that prefix reduces nothing (there would be nothing to combine)."""
    n = 0
    while n < len(kernel.stages) and _chunkable(kernel.stages[n]):
        n += 1
    accs = tuple(SplitAccumulator(s_no, j, r[0], st.body[r[1]].dtype, partial_combine(r[0]))
                 for s_no, st in enumerate(kernel.stages[:n]) for j, r in enumerate(st.reduce))
    return SplitPlan(n, accs) if accs else None
