"""A costly per-element value computed twice over one row is computed once: the
earlier stage stores it into the later stage's output row, the later stage loads it
back and overwrites it with its own result (a rewrite of a LoopKernel's stages that
the LLVM backend applies to each loop function it emits, as it does passes/coalesce.py).

Softmax and cross-entropy's gradient walk each row in stages: max, sum(exp(z - m)),
then out = f(exp(z - m)). As fused, the last stage computes exp(z - m) again: two
exponentials per element where one would do, and the exponential is most of the
arithmetic (softmax cross-entropy over (4096, 1000), forward and backward: two of
its four passes). With the rewrite the sum stage also stores e = exp(z - m) in out's
row, which the last stage reads (the row is still in the cache) and rescales in place.

When: the kernel has an outer domain (one row per outer point) and a map stage t
stores exactly one buffer B, at the loop indices in order, over the whole of B
(B's shape is the outer domain followed by t's inner domain) and of B's dtype; no
other stage reads or writes B; an earlier stage s over the same inner domain
computes a value that t computes too (the same instructions on the same loads and
results) and that involves a transcendental function. The kernel then reads a buffer
it writes, which the Program's convention rules out for the backends in general
(a Triton program's block may not see its own stores), so this stays a rewrite the
LLVM backend applies at emission, where each row runs in one thread, in order.
"""
from __future__ import annotations

from .program import Instr, Stage, Store

COSTLY = frozenset({"exp", "expm1", "log", "log1p", "tanh", "sigmoid", "softplus", "sin", "cos", "pow"})


def reuse_row_values(program, outer, stages):
    """(outer, stages) with each costly value a later map stage recomputes from an
    earlier stage stored there and loaded back (see above)."""
    stages = list(stages)
    if not outer:
        return outer, stages
    for t, st in enumerate(stages):
        target = _row_store(program, outer, st)
        if target is None or _touched_elsewhere(stages, t, target.buffer):
            continue
        for s in range(t):
            pair = _shared_value(stages[s], st, len(outer)) if stages[s].inner == st.inner else None
            if pair is not None and st.body[pair[1]].dtype == program.buffers[target.buffer].dtype:
                stages[s], stages[t] = _reuse(stages[s], st, target, pair, len(outer) + len(st.inner))
                break
    return outer, stages


def _row_store(program, outer, st: Stage):
    """Stage st's one store, where st is a map stage storing a whole buffer at its loop indices."""
    if st.reduce or not st.inner or len(st.stores) != 1:
        return None
    store = st.stores[0]
    buf = program.buffers[store.buffer]
    axes = tuple(outer) + tuple(st.inner)
    if store.accumulate or tuple(buf.shape) != axes or st.body[store.value].dtype != buf.dtype:
        return None
    if any(st.body[a].op != "idx" or st.body[a].attr("axis") != k for k, a in enumerate(store.index)):
        return None
    return store


def _touched_elsewhere(stages, t, buffer) -> bool:
    for n, st in enumerate(stages):
        if any(i.op == "load" and i.attr("buffer") == buffer for i in st.body):
            return True
        if n != t and any(x.buffer == buffer for x in st.stores):
            return True
    return False


def value_keys(body) -> list:
    """A structural key per instruction: equal keys compute equal values at one point
    (of one kernel, where no stage in between writes a buffer the value loads)."""
    keys = []
    for ins in body:
        keys.append((ins.op, ins.attrs, ins.dtype, tuple(keys[a] for a in ins.args)))
    return keys


def _costly(body) -> list:
    out = []
    for ins in body:
        out.append(ins.op in COSTLY or any(out[a] for a in ins.args))
    return out


def _varies(body, first_inner) -> list:
    out = []
    for ins in body:
        out.append((ins.op == "idx" and ins.attr("axis") >= first_inner) or any(out[a] for a in ins.args))
    return out


def _shared_value(early: Stage, late: Stage, first_inner: int):
    """(position in early, position in late) of the latest costly per-element value of
    `late` that `early` computes too, or None."""
    early_at = {k: n for n, k in enumerate(value_keys(early.body))}
    costly, varies = _costly(late.body), _varies(late.body, first_inner)
    best = None
    for n, k in enumerate(value_keys(late.body)):
        if costly[n] and varies[n] and k in early_at and late.body[n].op != "load":
            best = (early_at[k], n)
    return best


def _reuse(early: Stage, late: Stage, target: Store, pair, naxes):
    e_pos, l_pos = pair
    if any(a >= l_pos for a in target.index):     # the load must come after its index values
        return early, late
    body = list(early.body)
    index = []
    for axis in range(naxes):
        found = next((n for n, i in enumerate(body) if i.op == "idx" and i.attr("axis") == axis), None)
        if found is None:
            body.append(Instr("idx", (), (("axis", axis),), "int64"))
            found = len(body) - 1
        index.append(found)
    early = Stage(early.inner, body, early.reduce, list(early.stores) + [Store(target.buffer, tuple(index), e_pos)])
    lbody = list(late.body)
    lbody[l_pos] = Instr("load", tuple(target.index), (("buffer", target.buffer),), lbody[l_pos].dtype)
    return early, Stage(late.inner, lbody, late.reduce, list(late.stores)).compact()
