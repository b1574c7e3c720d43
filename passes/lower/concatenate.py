"""A materialised concatenation of pieces of one size: one map stage over a piece's
shape that computes every piece once and stores each at its offset.

The value rule (passes/lower/movement.py) reads a concatenation at any index by
choosing among its pieces with masks: right where a consumer fuses it, but a
kernel that stores the whole concatenation then evaluates every piece, masked, at
every element (an LSTM's gate gradient dz = [di, df, dg, do], passes/rewrites'
sum_of_pads: four times the pointwise work). Here the kernel runs over the shape
of one piece, so each piece is computed where it is stored and the values the
pieces share (the LSTM's dc) once per point. Pieces of different sizes, or a size
that is symbolic along the axis, lower as any materialised movement value.
"""
from __future__ import annotations

from nngraph.types import Dim

from ..fusion import is_source
from .body import Body, NotFusable
from .elementwise import MAX_CANDIDATES, lower_map
from .emitter import Emitter
from .registry import lowering


def piece_shape(n):
    """The shape every piece of concatenation n has, or None when they differ."""
    ax = n.attrs["axis"]
    shapes = {tuple(x.shape) for x in n.inputs}
    if len(n.inputs) < 2 or len(shapes) != 1 or isinstance(n.inputs[0].shape[ax], Dim):
        return None
    return shapes.pop()


@lowering("concatenate")
def lower_concatenate(ctx, n) -> None:
    shape = piece_shape(n)
    if ctx.opt < 1 or shape is None:
        lower_map(ctx, n)
        return
    same = [g for g in reversed(ctx.groups) if g.kernel is None and g.outer == shape][:MAX_CANDIDATES]
    g = next((g for g in same if _join(ctx, g, n, dry=True)), None)
    if g is None:
        g = ctx.new_group(shape)
    _join(ctx, g, n, dry=False)


def _store_index(body, idx, axis: int, offset: int) -> tuple:
    shifted = body.iadd(idx[axis], body.iconst(offset)) if offset else idx[axis]
    return idx[:axis] + (shifted,) + idx[axis + 1:]


def _join(ctx, g, n, dry: bool) -> bool:
    """Add n's pieces to kernel g as one map stage over g's outer domain (the piece
    shape); with dry, only say whether g may take them."""
    own = set() if is_source(n) else {id(n)}
    p = len(g.outer)
    if dry:
        body = Body()
        em = Emitter(body, ctx.buf_of, ctx.buffers, g.results, [body.idx(q) for q in range(p)],
                     len(g.stages), g.inline | own, g.writes)
        try:
            for x in n.inputs:
                em.value(x, tuple(body.idx(q) for q in range(p)))
        except NotFusable:
            return False
        return ctx.can_join(g, em.loads)
    last = g.stages[-1] if g.stages else None
    stage = last if last is not None and last.kind == "map" and last.inner == () else g.new_stage((), "map")
    idx = tuple(stage.body.idx(q) for q in range(p))
    ax, size = n.attrs["axis"], n.inputs[0].shape[n.attrs["axis"]]
    bufs = ctx.store_bufs[id(n)]
    for k, x in enumerate(n.inputs):
        v = stage.emitter.value(x, idx)
        for b in bufs:
            stage.stores.append(ctx.store(stage.body, b, _store_index(stage.body, idx, ax, k * size), v))
    g.members.append(n)
    ctx.group_of[id(n)] = g
    ctx.note_reads(g, stage.emitter.loads)
    ctx.note_writes(g, bufs)
    return True
