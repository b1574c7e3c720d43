"""LoopKernel -> one LLVM function `void k(bufs, sizes, lo, hi, extra)` running the outer
domain's first axis over [lo, hi) (so the entry point can split it across threads;
`extra` is unused by loop kernels).

At each outer point the stages run in order: nested inner loops, the SSA body,
then stores (map stage) or accumulator updates (reduce stage). Loads and stores
are plain row-major address arithmetic on loop indices, so the innermost loop is
unit-stride where the data is and LLVM's loop vectoriser widens it. Float sum
accumulators carry `reassoc contract` (only those adds), which lets reductions
vectorise too. The stages themselves are emitted by codegen/llvm/stage.py.
"""
from __future__ import annotations

import llvmlite.ir as ir

from passes.coalesce import acc_as_load, coalesce, drop_unit_lead
from passes.exp_quotient import exps_as_quotients
from passes.exp_sign import mark_nonpositive_exps
from passes.one_hot_scatter import scatter_one_hot_adds
from passes.row_reuse import reuse_row_values
from passes.split_reduce import SplitPlan, split_plan

from . import scalar
from .column_reduce import emit_column_reduction, is_column_reduction
from .irtypes import I8P, I32, I64, i64, value_type
from .loops import FnBuilder
from .stage import accumulate, emit_point, emit_stage


def emit_loop_function(module, name, program, symbols, outer, stages, acc_buffer=None, unit_lead=False):
    """Build the function `void f(bufs, sizes, lo, hi, extra)` for one loop nest (a
    LoopKernel, or a matmul epilogue whose `acc` reads `acc_buffer` at the outer
    index); [lo, hi) bounds the first outer axis, or with unit_lead=True the first
    of size other than one (passes/coalesce.unit_lead); `extra` is unused."""
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=symbols)
    lo, hi, _ = fb.args
    if unit_lead:
        outer, stages = drop_unit_lead(outer, stages)
    if acc_buffer is None:
        outer, stages = exps_as_quotients(outer, stages)           # softmax: exp(a - log s) = exp(a) / s
        outer, stages = mark_nonpositive_exps(outer, stages)       # exp(z - max z): z - max z <= 0
        outer, stages = reuse_row_values(program, outer, stages)   # exp(z - m) once per element
        outer, stages = scatter_one_hot_adds(program, outer, stages)   # - onehot / N: once per row
    elif (loaded := acc_as_load(program, outer, stages, acc_buffer)) is not None:
        stages, acc_buffer = loaded, None     # an epilogue whose product is read as a buffer
    outer, stages = coalesce(program, outer, stages)   # short rows merged into longer ones
    if acc_buffer is None and is_column_reduction(program, outer, stages):
        emit_column_reduction(fb, lo, hi, stages)
    elif outer:
        with fb.nest(outer, "o", first=(lo, hi)) as oidx:
            emit_point(fb, oidx, stages, acc_buffer)
    else:
        emit_point(fb, [], stages, acc_buffer)
    fb.b.ret_void()
    return fb.finish()


THREAD_COMBINES = ("sum", "max", "min")   # a partial holds one value: argmax's index is not kept


def thread_split(kernel) -> SplitPlan | None:
    """The kernel's split plan (passes/split_reduce.py) where this backend uses it: no
    outer domain and a first stage that is a full sum/max/min reduction. Only stage 0
    is chunked (a range of its first inner axis per thread, emit_partial_function);
    emit_finish_function folds the partials and runs stages 1.. once."""
    plan = split_plan(kernel)
    if plan is None or kernel.outer or not kernel.stages[0].reduce:
        return None
    if any(a.combine not in THREAD_COMBINES for a in plan.accumulators if a.stage == 0):
        return None
    return plan


def partial_type(stage):
    return ir.LiteralStructType([value_type(stage.body[r[1]].dtype) for r in stage.reduce])


def emit_partial_function(module, name, program, symbols, stage):
    """`void f(bufs, sizes, lo, hi, partial)`: stage 0 over first-inner-axis range
    [lo, hi), its accumulators written to *partial."""
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=symbols)
    lo, hi, out = fb.args
    accs = emit_stage(fb, [], stage, 0, {}, None, first=(lo, hi))
    dst = fb.b.bitcast(out, partial_type(stage).as_pointer())
    for j, (kind, dt, a, ia) in enumerate(accs):
        fb.b.store(fb.b.load(a), fb.b.gep(dst, [ir.Constant(I32, 0), ir.Constant(I32, j)]))
    fb.b.ret_void()
    return fb.finish()


def emit_finish_function(module, name, program, symbols, kernel, plan, n_parts):
    """`void f(bufs, sizes, lo, hi, partials)`: fold n_parts partials of stage 0, each
    accumulator by its plan's combine rule, then run the later stages with them as
    stage 0's results."""
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=symbols)
    b = fb.b
    st = kernel.stages[0]
    pt = partial_type(st)
    parts = b.bitcast(fb.args[2], pt.as_pointer())
    accs = []
    for acc in (a for a in plan.accumulators if a.stage == 0):
        kind, dt, red = acc.combine, acc.dtype, st.reduce[acc.slot]
        a = fb.alloca(value_type(dt), name=f"acc_{kind}")
        b.store(scalar.identity(kind, dt), a)
        for q in range(n_parts):
            v = b.load(b.gep(parts, [i64(q), ir.Constant(I32, acc.slot)]))
            accumulate(fb, kind, dt, a, None, v, None, None, red)
        accs.append((kind, dt, a, None))
    results = {0: accs}
    for s_no, stg in enumerate(kernel.stages[1:], start=1):
        results[s_no] = emit_stage(fb, [], stg, s_no, results, None)
    b.ret_void()
    return fb.finish()
