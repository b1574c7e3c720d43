"""Elementwise ops: their scalar instructions, and how a materialised elementwise
or movement value becomes (or joins) a map stage.

Value rules (`@inline`): an elementwise op becomes the scalar op of the same name;
its operands are broadcast by index 0 on size-1 axes and converted as the op's
`Op.category` says (the graph op's NumPy reference converts the same way); iota,
numel and uniform become index expressions.

Kernel rule (`@lowering.default`): a materialised value of an elementwise, movement, index,
random or source op joins an earlier LoopKernel as a map stage when that is legal
(it reads that kernel's reductions at the kernel's outer point, or the kernel's outer
domain is its whole shape), else starts a kernel of its own.
"""
from __future__ import annotations

from nngraph import semantics
from nngraph.node import OPS
from nngraph.types import promote

from ..fusion import is_source, scalar_const
from .body import I64, Body, LoweringError, NotFusable, flat_index, py_scalar, size_prod
from .emitter import Emitter
from .registry import inline, lowering

MAX_CANDIDATES = 6


# ----------------------------------------------------------------------------- value rules

def _operand_dtype(n, category):
    """The dtype both operands of a binary op are converted to (None: as they are)."""
    if category == "compare":
        return promote(n.inputs[0].dtype, n.inputs[1].dtype)
    if category == "logical":
        return "bool"
    return n.dtype


@inline.default("elementwise")
def _elementwise(em, n, idx, mask):
    category = OPS[n.op].category
    if category is not None:
        dt = _operand_dtype(n, category)
        args = [em.operand(n, i, idx, mask, dt) for i in range(2)]
    elif len(n.inputs) == 1:
        args = [em.operand(n, 0, idx, mask)]
    else:
        raise LoweringError(f"cannot inline {n.op} ({n.type} built at {n.where}); it must be materialised")
    return em.body.emit(n.op, args, n.dtype)


def _bool_result(name):
    """Comparisons and logical ops give bool whatever their operands (nngraph.node.Op.category)."""
    return name in OPS and OPS[name].category in ("compare", "logical")


def _rule_builders(body, dt):
    """`op(name, *args)` and `const(v)` over `body` in dtype `dt`: how nngraph/semantics.py's
    rules emit scalar instructions."""
    def op(name, *args):
        return body.emit(name, args, "bool" if _bool_result(name) else dt)

    def const(v):
        return body.emit("const", (), dt, value=py_scalar(v, dt))

    return op, const


@inline("mod", "fmod")
def _remainder(em, n, idx, mask):
    """Both remainders through the one scalar `fmod`, by nngraph/semantics.py's rules
    (a safe integer divisor; np.mod's sign fix-up)."""
    a, b = (em.operand(n, i, idx, mask, n.dtype) for i in range(2))
    return semantics.remainder_from_fmod(n.op, a, b, n.dtype, *_rule_builders(em.body, n.dtype))


@inline("trunc_div")
def _trunc_div(em, n, idx, mask):
    """Integer division through the one scalar `trunc_div` (sdiv) by a divisor kept off
    0 and -1, by nngraph/semantics.py's rule."""
    a, b = (em.operand(n, i, idx, mask, n.dtype) for i in range(2))
    return semantics.trunc_div_from_sdiv(a, b, *_rule_builders(em.body, n.dtype))


@inline("stop_gradient")
def _stop_gradient(em, n, idx, mask):
    return em.operand(n, 0, idx, mask)


@inline("cast")
def _cast(em, n, idx, mask):
    return em.body.cast(em.operand(n, 0, idx, mask), n.dtype)


@inline("where")
def _where(em, n, idx, mask):
    c = em.operand(n, 0, idx, mask, "bool")
    a = em.operand(n, 1, idx, mask, n.dtype)
    f = em.operand(n, 2, idx, mask, n.dtype)
    return em.body.emit("where", (c, a, f), n.dtype)


@inline("iota")
def _iota(em, n, idx, mask):
    return em.body.cast(idx[n.attrs["axis"]], n.dtype)


@inline("numel")
def _numel(em, n, idx, mask):
    return em.body.cast(size_prod(em.body, n.attrs["sizes"]), n.dtype)


@inline("uniform")
def _uniform(em, n, idx, mask):
    b = em.body
    c = b.cast(em.value(n.inputs[0], (), None), I64)
    return b.emit("uniform", (c, flat_index(b, n.shape, idx)), "float32", seed=int(n.attrs["seed"]))


@inline("constant")
def _constant(em, n, idx, mask):
    raise LoweringError(f"constant {n.type} has no buffer")


# ----------------------------------------------------------------------------- kernel rule

@lowering.default("elementwise", "movement", "index", "random", "source")
def lower_map(ctx, n):
    S = tuple(n.shape)
    if ctx.opt >= 1:
        for g, assign in _map_candidates(ctx, n):
            if _add_map(ctx, g, n, assign, dry=True):
                _add_map(ctx, g, n, assign, dry=False)
                return
    g = ctx.new_group(S)
    _add_map(ctx, g, n, list(range(len(S))), dry=False)


def _map_candidates(ctx, n):
    """(kernel, outer axis -> axis of n) pairs worth trying, most promising first."""
    S = tuple(n.shape)
    out = []
    # a probe without kernel context tells which reductions n reads
    body = Body()
    em = Emitter(body, ctx.buf_of, ctx.buffers, inline={id(n)} if not is_source(n) else set())
    try:
        em.value(n, tuple(body.idx(k) for k in range(len(S))))
    except (NotFusable, LoweringError):
        return []
    readers = []
    for b in em.loads:
        w = ctx.writer.get(b)
        if w is not None and ctx.groups[w].kernel is None and ctx.groups[w] not in readers:
            readers.append(ctx.groups[w])
    readers.sort(key=lambda g: -g.no)
    for g in readers[:MAX_CANDIDATES]:
        a = _assignment(ctx, g, n)
        if a is not None:
            out.append((g, a))
    # a kernel over n's whole shape, also one that writes a value n reads (n recomputes it there)
    tried = {g.no for g, _ in out}
    same = [g for g in reversed(ctx.groups) if g.kernel is None and g.outer == S and g.no not in tried]
    out += [(g, list(range(len(S)))) for g in same[:MAX_CANDIDATES]]
    return out


def _assignment(ctx, g, n):
    """Which axis of n each outer axis of g is, read off the indices at which n reads
    g's reductions; None when they do not line up."""
    S = tuple(n.shape)
    body = Body()
    em = Emitter(body, ctx.buf_of, ctx.buffers, g.results, (), 10 ** 9,
                 g.inline | ({id(n)} if not is_source(n) else set()), g.writes, probe=True)
    try:
        em.value(n, tuple(body.idx(k) for k in range(len(S))))
    except (NotFusable, LoweringError):
        return None
    if not em.refs:
        return None
    assign = [None] * len(g.outer)
    for r, ridx in em.refs:
        for q, ko in enumerate(g.results[id(r)][2]):
            if r.shape[ko] == 1:
                continue
            ins = body.instrs[ridx[ko]]
            if ins.op != "idx":
                return None
            axis = ins.attr("axis")
            if assign[q] is None:
                assign[q] = axis
            elif assign[q] != axis:
                return None
    used = [a for a in assign if a is not None]
    if len(set(used)) != len(used):
        return None
    for q, a in enumerate(assign):
        if a is None and g.outer[q] != 1:
            return None
        if a is not None and S[a] != g.outer[q]:
            return None
    return assign


def _map_index(body, n, assign, p):
    S = tuple(n.shape)
    var = {}
    for q, a in enumerate(assign):
        if a is not None:
            var[a] = body.idx(q)
    t = 0
    inner = []
    for k in range(len(S)):
        if k not in var:
            var[k] = body.idx(p + t)
            inner.append(S[k])
            t += 1
    return tuple(var[k] for k in range(len(S))), tuple(inner)


def _add_map(ctx, g, n, assign, dry: bool) -> bool:
    p = len(g.outer)
    own = set() if is_source(n) or scalar_const(n) else {id(n)}
    if dry:
        body = Body()
        em = Emitter(body, ctx.buf_of, ctx.buffers, g.results, [body.idx(q) for q in range(p)],
                     len(g.stages), g.inline | own, g.writes)
        idx, _ = _map_index(body, n, assign, p)
        try:
            em.value(n, idx)
        except NotFusable:
            return False
        return ctx.can_join(g, em.loads)
    _, inner = _map_index(Body(), n, assign, p)
    last = g.stages[-1] if g.stages else None
    stage = last if last is not None and last.kind == "map" and last.inner == inner else g.new_stage(inner, "map")
    g.inline |= own
    idx, _ = _map_index(stage.body, n, assign, p)
    v = stage.emitter.value(n, idx)
    bufs = ctx.store_bufs[id(n)]
    for b in bufs:
        stage.stores.append(ctx.store(stage.body, b, idx, v))
    g.members.append(n)
    ctx.group_of[id(n)] = g
    ctx.note_reads(g, stage.emitter.loads)
    ctx.note_writes(g, bufs)
    return True
