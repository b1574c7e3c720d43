"""matmul: one MatmulKernel (a BLAS call on the CPU, `tl.dot` on the GPU) whose
epilogue computes and stores the frontier values passes/fusion.py gave it
(relu(x @ W + b), the mask x @ W + b > 0, W - lr * acc).

A batched product summed over its batch, `sum(matmul(transpose(A, (0, 2, 1)), D),
axes=(0,))` (a weight gradient over all steps of a scan, passes/loop_sink.py), is
one GEMM of depth T*N: a MatmulKernel whose k is folded (passes/program.py), which
stores the sum directly; the batched product is never materialised. Its epilogue
reads the sum as `acc`: an SGD step stores W - lr * acc into W's update, so the
gradient itself is never stored either."""
from __future__ import annotations

from .. import fusion
from ..program import MatmulKernel
from .registry import lowering


@lowering("matmul")
def lower_matmul(ctx, m):
    total = _summed_over_batch(ctx, m)
    if total is not None:
        _lower_folded(ctx, m, total)
        return
    (an, ta), (bn, tb) = ctx.plan.operands[id(m)]
    a, b = ctx.buf_of[id(an)], ctx.buf_of[id(bn)]
    frontier = ctx.plan.epilogue.get(id(m), [m])
    stores, out = ctx.epilogue_output(m, frontier)
    if out is None:
        out = ctx.add_buffer(f"t_{m.op}", m.type, "temp", m)
    kern = MatmulKernel("k_matmul", a, b, out, tuple(m.shape[:-2]), m.shape[-2],
                        m.shape[-1], m.inputs[0].shape[-1], ta, tb, source=fusion.label(m))
    g = ctx.new_group(tuple(m.shape), kern)
    ctx.note_writes(g, {bb for _, bb in stores} | {out})
    loads = {a, b}
    if frontier != [m] or len(stores) > 1:
        loads |= ctx.emit_epilogue(g, m, frontier, lambda body: tuple(body.idx(k) for k in range(m.ndim)))
    g.members = list(frontier)
    for f in frontier:
        ctx.group_of[id(f)] = g
    ctx.note_reads(g, loads)


def _summed_over_batch(ctx, m):
    """The sum node when m's product is summed over its batch (passes/fusion.py's
    `summed_over_batch`) and m has no buffer but a temp (never materialised)."""
    roles = {id(o) for o in ctx.graph.outputs} | {id(v) for _, v in ctx.graph.updates}
    s = fusion.summed_over_batch(ctx.plan, m, roles)
    if s is None or any(ctx.buffers[b].kind != "temp" for b in ctx.store_bufs.get(id(m), [])):
        return None
    return s


def _lower_folded(ctx, m, total):
    """One GEMM of depth T*N for sum(matmul(Aᵀ, D), axes=(0,)); its epilogue (when
    fusion gave it one) computes and stores the frontier values from the sum (`acc`)."""
    (an, _), (bn, _) = ctx.plan.operands[id(m)]
    a, b = ctx.buf_of[id(an)], ctx.buf_of[id(bn)]
    frontier = ctx.plan.epilogue.get(id(m), [total])
    stores, out = ctx.epilogue_output(total, frontier)
    if out is None:
        out = ctx.add_buffer(f"t_{total.op}", total.type, "temp", total)
    kern = MatmulKernel("k_matmul", a, b, out, (), m.shape[1], m.shape[2], (an.shape[0], an.shape[1]),
                        True, False, source=f"{fusion.label(m)} summed by {fusion.label(total)}")
    g = ctx.new_group(tuple(total.shape), kern)
    ctx.note_writes(g, {bb for _, bb in stores} | {out})
    loads = {a, b}
    if frontier != [total] or len(stores) > 1:
        loads |= ctx.emit_epilogue(g, total, frontier, lambda body: tuple(body.idx(k) for k in range(total.ndim)))
    g.members = [m, total] + [f for f in frontier if f is not total]
    for x in g.members:
        ctx.group_of[id(x)] = g
    ctx.note_reads(g, loads)
    ctx.lowered.add(id(total))
