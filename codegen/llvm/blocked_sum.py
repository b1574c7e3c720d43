"""Blocked accumulation of float sums, so a long sum keeps its accuracy.

A float sum accumulated in one running total loses about n * eps relative to the
answer: 1e7 float32 values of 0.1 summed to 998501 (1.5e-3 off), a column sum over
2e6 rows 1.5% off. NumPy sums pairwise. Here the reduced loop runs in blocks of
SUM_BLOCK elements: each block sums into a fresh accumulator of the value's type
(the loop vectoriser still widens it: SIMD lanes times interleave partial sums,
about SUM_BLOCK / 64 adds each), and each block's total is added into a float64
total. The error is then a few eps whatever n, at the cost of one convert and add
per block. SUM_BLOCK is not tuned to any CPU: it only bounds the per-lane chains.
"""
from __future__ import annotations

import llvmlite.ir as ir

from nngraph.types import is_float

from .irtypes import F64, i64, value_type

SUM_BLOCK = 4096
# a column reduction's lanes run across columns, so each column's adds within a
# block are one chain: shorter blocks keep that chain's error as small
COLUMN_SUM_BLOCK = 256


def is_float_sum(kind, dt) -> bool:
    return kind == "sum" and is_float(dt)


class BlockedSums:
    """The float64 totals of a stage's float sums; `flush` adds the block accumulators
    into them and resets those; `finish` stores the totals back as the results."""

    def __init__(self, fb, accs):
        self.fb = fb
        self.items = [(a, dt) for kind, dt, a, _ in accs if is_float_sum(kind, dt)]
        self.totals = []
        for _, _ in self.items:
            t = fb.alloca(F64, name="sum_total")
            fb.b.store(ir.Constant(F64, 0.0), t)
            self.totals.append(t)

    def __bool__(self):
        return bool(self.items)

    def reset(self):
        for (a, dt), _ in zip(self.items, self.totals):
            self.fb.b.store(ir.Constant(value_type(dt), 0.0), a)

    def flush(self):
        b = self.fb.b
        for (a, dt), t in zip(self.items, self.totals):
            v = b.load(a)
            if value_type(dt) != F64:
                v = b.fpext(v, F64)
            b.store(b.fadd(b.load(t), v), t)

    def finish(self):
        b = self.fb.b
        for (a, dt), t in zip(self.items, self.totals):
            v = b.load(t)
            b.store(v if value_type(dt) == F64 else b.fptrunc(v, value_type(dt)), a)


def block_count(b, length, block: int):
    """ceil(length / block), at least 1: an empty range runs one empty block (it adds
    0). With a count that may be 0, the test for it is invariant in the loops around
    the block loop, and LLVM's O3 copied that whole loop nest to hoist the test out
    (non-trivial unswitching): an MLP step's three bias-gradient kernels cost 45 ms of
    LLVM time each instead of 30, for no gain at run time."""
    n = b.sdiv(b.add(length, i64(block - 1)), i64(block))
    return b.select(b.icmp_signed("<", n, i64(1)), i64(1), n)


def blocked_loop(fb, lo, hi, sums: BlockedSums, name):
    """Yields the index of `for i in [lo, hi)` run as blocks of SUM_BLOCK, with the
    block accumulators reset before and flushed after each block."""
    b = fb.b
    n_blocks = block_count(b, b.sub(hi, lo), SUM_BLOCK)
    with fb.loop(i64(0), n_blocks, f"{name}blk") as blk:
        start = b.add(lo, b.mul(blk, i64(SUM_BLOCK)))
        end = b.add(start, i64(SUM_BLOCK))
        end = b.select(b.icmp_signed("<", end, hi), end, hi)
        sums.reset()
        with fb.loop(start, end, name) as i:
            yield i
        sums.flush()
