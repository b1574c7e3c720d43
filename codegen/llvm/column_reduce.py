"""Column reductions with the contiguous axis innermost.

A kernel `out[c] = sum_n x[n, c]` (a bias gradient, a batch-norm mean) has the
column c as its outer axis and the row n as its reduced inner axis; emitted as
written, its inner loop walks x with a stride of a whole row and cannot vectorise
(MLP 784-512-256-10 step: the 512-column bias gradient took 70 us of 1.9 ms).
Here the loops are interchanged: a tile of TILE columns (8 vectors' worth, from
codegen/tuning.py) keeps its accumulators in a small stack array, the row loop is
outside, and the innermost loop runs over contiguous columns, so LLVM widens it. Each column still adds its rows in order.
Several reduced axes that are contiguous together (a bias gradient summed over [T, N]
of a [T, N, C] buffer) run as one row axis of their product (passes/coalesce.py's
flat_axes): LSTM(256) T=50 N=32, the [T, N, 1024] sum took the strided plain form at
0.7 GB/s (9.7 ms of a 50 ms step).
"""
from __future__ import annotations

import llvmlite.ir as ir

from codegen.tuning import tuning
from passes.coalesce import flat_axes

from . import scalar
from .blocked_sum import COLUMN_SUM_BLOCK, block_count, is_float_sum
from .irtypes import F64, i64, value_type
from .stage import accumulate, emit_body, emit_stage, emit_stores

TILE = tuning().column_tile     # 8 vectors of accumulators (codegen/tuning.py)
KINDS = ("sum", "max", "min")


def is_column_reduction(program, outer, stages) -> bool:
    """One outer axis, a first stage reducing (sum/max/min) over one inner axis (or
    several that run as one, flat_axes), later stages per point only, and loads that
    are contiguous along the outer axis (their last index is the outer index) rather
    than along a reduced one."""
    if len(outer) != 1 or not stages or not stages[0].reduce or not stages[0].inner:
        return False
    st = stages[0]
    if len(st.inner) > 1 and not flat_axes(program, 1, st.inner, st):
        return False
    if any(r[0] not in KINDS for r in st.reduce):
        return False
    if any(s.inner or s.reduce for s in stages[1:]):
        return False
    strided = False
    for ins in st.body:
        if ins.op == "acc":
            return False
        if ins.op != "load":
            continue
        nd = len(program.buffers[ins.attr("buffer")].shape)
        if nd == 0:
            continue
        last = st.body[ins.args[nd - 1]]
        if last.op != "idx":
            return False
        if last.attr("axis") >= 1:
            return False              # contiguous along a reduced axis: the plain form
        strided |= last.attr("axis") == 0
    return strided


def emit_column_reduction(fb, lo, hi, stages):
    """Columns [lo, hi) of the kernel, TILE at a time."""
    b = fb.b
    st = stages[0]
    dts = [st.body[r[1]].dtype for r in st.reduce]
    tiles = [fb.alloca(ir.ArrayType(value_type(dt), TILE), name=f"tile_{r[0]}") for r, dt in zip(st.reduce, dts)]
    # float sums: each block of COLUMN_SUM_BLOCK rows into the tile, then into float64 totals
    totals = [fb.alloca(ir.ArrayType(F64, TILE), name="tile_total") for r, dt in zip(st.reduce, dts)
              if is_float_sum(r[0], dt)]
    sums = [(tile, dt) for tile, r, dt in zip(tiles, st.reduce, dts) if is_float_sum(r[0], dt)]
    n_tiles = b.sdiv(b.add(b.sub(hi, lo), i64(TILE - 1)), i64(TILE))
    with fb.loop(i64(0), n_tiles, "tile") as t:
        c0 = b.add(lo, b.mul(t, i64(TILE)))
        end = b.add(c0, i64(TILE))
        c1 = b.select(b.icmp_signed("<", end, hi), end, hi)

        def slot(tile, c):
            return b.gep(tile, [i64(0), b.sub(c, c0)])

        with fb.loop(i64(0), i64(TILE), "init") as j:     # the whole tile (see _flush_block)
            for tile, r, dt in zip(tiles, st.reduce, dts):
                b.store(scalar.identity(r[0], dt), b.gep(tile, [i64(0), j]))
            for total in totals:
                b.store(ir.Constant(F64, 0.0), b.gep(total, [i64(0), j]))
        n_rows = fb.numel(st.inner)
        leading = [i64(0)] * (len(st.inner) - 1)    # flat rows: the last reduced axis carries them
        n_blocks = block_count(b, n_rows, COLUMN_SUM_BLOCK) if totals else i64(1)
        with fb.loop(i64(0), n_blocks, "rowblk") as blk:
            r0 = b.mul(blk, i64(COLUMN_SUM_BLOCK)) if totals else i64(0)
            r1 = b.add(r0, i64(COLUMN_SUM_BLOCK)) if totals else n_rows
            r1 = b.select(b.icmp_signed("<", r1, n_rows), r1, n_rows) if totals else r1
            with fb.loop(r0, r1, "row") as n:
                with fb.loop(c0, c1, "col") as c:
                    vals, vdts = emit_body(fb, st.body, [c] + leading + [n], {}, None)
                    for tile, r, dt in zip(tiles, st.reduce, dts):
                        accumulate(fb, r[0], dt, slot(tile, c), None, vals[r[1]], None, vdts, r)
                    emit_stores(fb, st.stores, vals, vdts)
            _flush_block(fb, sums, totals, last=False)
        _flush_block(fb, sums, totals, last=True)
        with fb.loop(c0, c1, "fin") as c:
            results = {0: [(r[0], dt, slot(tile, c), None) for tile, r, dt in zip(tiles, st.reduce, dts)]}
            for s_no, later in enumerate(stages[1:], start=1):
                results[s_no] = emit_stage(fb, [c], later, s_no, results, None)


def _flush_block(fb, sums, totals, last):
    """After a block: add the tile's float sums into their float64 totals and restart
    them at 0. After the last block (last=True): the tile takes the total (rounded).
    Over the whole tile (TILE slots, a constant trip count: cheaper for LLVM to compile
    than [c0, c1), and the slots past c1 are never read)."""
    if not sums:
        return
    b = fb.b
    with fb.loop(i64(0), i64(TILE), "final" if last else "flush") as j:
        def at(arr):
            return b.gep(arr, [i64(0), j])
        for (tile, dt), total in zip(sums, totals):
            t = b.load(at(total))
            if last:
                b.store(t if value_type(dt) == F64 else b.fptrunc(t, value_type(dt)), at(tile))
                continue
            v = b.load(at(tile))
            b.store(b.fadd(t, v if value_type(dt) == F64 else b.fpext(v, F64)), at(total))
            b.store(ir.Constant(value_type(dt), 0.0), at(tile))
