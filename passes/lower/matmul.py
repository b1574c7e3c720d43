"""matmul: one MatmulKernel (a BLAS call on the CPU, `tl.dot` on the GPU) whose
epilogue computes and stores the frontier values passes/fusion.py gave it
(relu(x @ W + b), the mask x @ W + b > 0, W - lr * acc)."""
from __future__ import annotations

from .. import fusion
from ..program import MatmulKernel
from .registry import lowering


@lowering("matmul")
def lower_matmul(ctx, m):
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
