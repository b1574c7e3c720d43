"""Reductions (sum, max, min, argmax): one reduce stage of a LoopKernel whose outer
domain is the kept sizes (a row block). A reduction joins an earlier kernel with the
same outer domain when it can read its input there (softmax's max and sum over one
row: one kernel); independent reductions over the same inner domain share one stage.
The kernel's final map stage (passes/lower/assemble.py) stores the results other
kernels read."""
from __future__ import annotations

from .body import Body, LoweringError, NotFusable
from .elementwise import MAX_CANDIDATES
from .emitter import Emitter
from .registry import lowering


@lowering.default("reduction")
def lower_reduction(ctx, r):
    x, axes = r.inputs[0], r.attrs["axes"]
    kept = [a for a in range(x.ndim) if a not in axes]
    outer = tuple(x.shape[a] for a in kept)
    cands = [g for g in reversed(ctx.groups) if g.kernel is None and g.outer == outer][:MAX_CANDIDATES]
    if ctx.opt >= 1:
        for g in cands:
            if _try_reduction(ctx, g, r, dry=True):
                _try_reduction(ctx, g, r, dry=False)
                return
    g = ctx.new_group(outer)
    if not _try_reduction(ctx, g, r, dry=False):
        raise LoweringError(f"cannot lower {r.op} {r.type} built at {r.where}")


def _reduction_index(body, r, p):
    """x's index in a kernel with p outer axes: kept axes outer, reduced axes inner."""
    x, axes = r.inputs[0], r.attrs["axes"]
    idx, q, t = [], 0, 0
    for a in range(x.ndim):
        if a in axes:
            idx.append(body.idx(p + t))
            t += 1
        else:
            idx.append(body.idx(q))
            q += 1
    return tuple(idx)


def _reduce_stage(g, x, r, p, inner):
    """(the stage r reduces in, r's input value there): the latest reduce stage over
    the same inner domain when x can be emitted in it, else a new one."""
    # the latest reduce stage, looking past per-row epilogue stages (they make no results)
    k = len(g.stages) - 1
    while k >= 0 and g.stages[k].kind == "map" and g.stages[k].inner == ():
        k -= 1
    last = g.stages[k] if k >= 0 else None
    if last is not None and last.kind == "reduce" and last.inner == inner:
        m = last.emitter.mark()
        try:
            return last, last.emitter.value(x, _reduction_index(last.body, r, p))
        except NotFusable:
            last.emitter.rollback(m)
    stage = g.new_stage(inner, "reduce")
    return stage, stage.emitter.value(x, _reduction_index(stage.body, r, p))


def _try_reduction(ctx, g, r, dry: bool) -> bool:
    x, axes = r.inputs[0], r.attrs["axes"]
    p = len(g.outer)
    inner = tuple(x.shape[a] for a in axes)
    if dry:
        body = Body()
        em = Emitter(body, ctx.buf_of, ctx.buffers, g.results, [body.idx(q) for q in range(p)],
                     len(g.stages), g.inline, g.writes)
        try:
            em.value(x, _reduction_index(body, r, p))
        except NotFusable:
            return False
        return ctx.can_join(g, em.loads)
    stage, v = _reduce_stage(g, x, r, p, inner)
    entry = ("argmax", v, stage.body.idx(p)) if r.op == "argmax" else (r.op, v)
    stage.reduce.append(entry)
    kept_out = ([a for a in range(x.ndim) if a not in axes] if r.attrs["keepdims"]
                else list(range(len(g.outer))))
    ctx.note_reads(g, stage.emitter.loads)
    ctx.register_result(g, r, g.stages.index(stage), len(stage.reduce) - 1, kept_out)
    return True
