"""Coalescing of adjacent loop axes before a LoopKernel becomes loops: a rewrite of
a LoopKernel's (outer, stages) into an equivalent one with fewer, longer axes. It
depends on no backend; the LLVM backend applies it to each loop function it emits
(codegen/llvm/kernel.py). (The Triton backend does not need it: its blocks already
run over the flat element range.)

Small images make short rows: a reduction over (N, 28, 28) or a pointwise kernel
over (N, 6, 10, 10) runs its innermost loop 28 or 10 times, so a 16-wide vector
loop spends its time in loop overhead, masked tails and (for reductions) one
horizontal reduction per row. Two adjacent loop axes a, a + 1 of static sizes
(Sa, Sb) merge into one axis of Sa * Sb when the body uses their indices only
as a pair of adjacent buffer index arguments (p - 1, p), (i_a, i_b) or
(i_a + s, i_b) with s independent of both axes (a window's tap row), of buffers
whose axis p is Sb (axis p - 1 may be longer than Sa: the input rows a window
reaches): the row-major offset (... + i_a + s) * Sb + i_b then equals
(... + s) * Sb + q with q the merged index, so the rewrite is just
`idx a` -> const 0 and `idx a + 1` -> `idx a` (the merged one), the later axes
renumbered. Iteration order is unchanged (row-major), so results are bitwise
equal. Axis 0 of the outer domain is never merged (a backend may split it across
threads); leading axes of size one are dropped first where the backend asks
(drop_unit_lead), so that axis 0 is one worth splitting.

A matmul epilogue's `acc` reads the product at the outer index: where the product's
buffer has exactly the outer domain's shape, acc_as_load makes each `acc` that load
(its indices as `idx` instructions), so the same rule merges its axes (a batch-1
convolution's epilogue over [Og, 7, 7] runs rows of 49, not of 7).
"""
from __future__ import annotations

from .program import Instr, Stage, Store, instr


def acc_as_load(program, outer, stages, acc_buffer) -> list | None:
    """`stages` with every `acc` replaced by a load of acc_buffer at the outer index,
    or None when acc_buffer's shape is not the outer domain."""
    if tuple(program.buffers[acc_buffer].shape) != tuple(outer):
        return None
    out = []
    for st in stages:
        body, new = [], {}
        for k, ins in enumerate(st.body):
            if ins.op == "acc":
                first = len(body)
                body += [instr("idx", dtype="int64", axis=a) for a in range(len(outer))]
                ins = instr("load", tuple(range(first, len(body))), dtype=ins.dtype, buffer=acc_buffer)
            else:
                ins = Instr(ins.op, tuple(new[a] for a in ins.args), ins.attrs, ins.dtype)
            new[k] = len(body)
            body.append(ins)
        out.append(Stage(st.inner, body, tuple((r[0],) + tuple(new[a] for a in r[1:]) for r in st.reduce),
                         [Store(x.buffer, tuple(new[a] for a in x.index), new[x.value], x.accumulate)
                          for x in st.stores]))
    return out

_ZERO = Instr("const", (), (("value", 0),), "int64")


def coalesce(program, outer, stages):
    """(outer, stages) with adjacent axes merged where that is exact (see above)."""
    outer, stages = tuple(outer), list(stages)
    if any(i.op == "acc" for s in stages for i in s.body):
        return outer, stages
    changed = True
    while changed:
        changed = False
        # outer axes (never axis 0), then each stage's inner axes
        for a in range(len(outer) - 2, 0, -1):
            if _mergeable(program, outer[a], outer[a + 1], a, stages):
                outer = outer[:a] + (outer[a] * outer[a + 1],) + outer[a + 2:]
                stages = [_rewrite(s, a) for s in stages]
                changed = True
                break
        if changed:
            continue
        for s_no, st in enumerate(stages):
            base = len(outer)
            for j in range(len(st.inner) - 2, -1, -1):
                a = base + j
                if _mergeable(program, st.inner[j], st.inner[j + 1], a, [st]):
                    inner = st.inner[:j] + (st.inner[j] * st.inner[j + 1],) + st.inner[j + 2:]
                    stages[s_no] = _rewrite(Stage(inner, st.body, st.reduce, st.stores), a)
                    changed = True
                    break
            if changed:
                break
    return outer, stages


def unit_lead(outer) -> int:
    """How many leading axes of `outer` are of static size 1 (all but the last one at
    most): drop_unit_lead removes them."""
    k = 0
    while k < len(outer) - 1 and isinstance(outer[k], int) and outer[k] == 1:
        k += 1
    return k


def drop_unit_lead(outer, stages):
    """(outer, stages) without the unit_lead axes (their index is 0), so that axis 0,
    the one a backend splits across threads, is a real one: a batch-1 kernel over
    [1, 64, 56, 56] (a max pool) runs over [64, 56, 56]."""
    outer, stages = tuple(outer), list(stages)
    for _ in range(unit_lead(outer)):
        outer, stages = outer[1:], [_rewrite(s, 0) for s in stages]
    return outer, stages


def _mergeable(program, sa, sb, a, stages) -> bool:
    if not (isinstance(sa, int) and isinstance(sb, int)) or sa <= 1 or sb <= 1:
        return False
    for st in stages:
        body = st.body
        A = {k for k, i in enumerate(body) if i.op == "idx" and i.attr("axis") == a}
        B = {k for k, i in enumerate(body) if i.op == "idx" and i.attr("axis") == a + 1}
        if not A and not B:
            continue
        shifted = _shifted(body, A, A | B)
        A = A | shifted
        both = A | B
        accesses = []
        for k, ins in enumerate(body):
            if not both.intersection(ins.args) or k in shifted:
                continue
            if ins.op != "load":
                return False
            buf = program.buffers[ins.attr("buffer")]
            nd = len(buf.shape)
            if both.intersection(ins.args[nd:]):        # the mask
                return False
            accesses.append((buf.shape, ins.args[:nd]))
        for store in st.stores:
            if store.value in both:
                return False
            accesses.append((program.buffers[store.buffer].shape, store.index))
        for r in st.reduce:
            if both.intersection(r[1:]):
                return False
        for shape, index in accesses:
            for p, v in enumerate(index):
                if v in A:
                    if not (p + 1 < len(index) and index[p + 1] in B and shape[p + 1] == sb):
                        return False
                elif v in B:
                    if not (p >= 1 and index[p - 1] in A):
                        return False
    return True


def _shifted(body, A, both) -> set:
    """The values `idx a + s` in body with s computed without axes a, a + 1 (a constant,
    or another loop's index): used at index position p - 1 they give the row-major
    offset (... + i_a + s) * Sb + i_b = (... + s) * Sb + q as well (a window's tap
    row oh + i of a buffer with more rows than the loop has)."""
    depends = set(both)
    for k, ins in enumerate(body):
        if depends.intersection(ins.args):
            depends.add(k)
    return {k for k, ins in enumerate(body) if ins.op == "add" and ins.dtype == "int64" and len(ins.args) == 2
            and sum(x in A for x in ins.args) == 1 and not any(x in depends and x not in A for x in ins.args)}


def _rewrite(st: Stage, a) -> Stage:
    body = []
    for ins in st.body:
        if ins.op == "idx":
            ax = ins.attr("axis")
            if ax == a:
                ins = _ZERO
            elif ax > a:
                ins = Instr("idx", (), (("axis", ax - 1),), ins.dtype)
        body.append(ins)
    return Stage(st.inner, body, st.reduce, st.stores)


def flat_axes(program, first, sizes, stage) -> bool:
    """True when loop axes first .. first + len(sizes) - 1 of `stage` (of those sizes,
    static or symbolic) can run as one flat axis of their product: every access that
    uses any of them uses all, in order, as adjacent index arguments over buffer axes of
    exactly those sizes, and their indices feed nothing else. Then indexing with 0 for
    all but the last axis and the flat index for the last gives the same row-major
    offsets (a bias gradient's sum over [T, N] of a [T, N, C] buffer: one row loop of
    T * N rows)."""
    axes = range(first, first + len(sizes))
    uses = {ax: {k for k, i in enumerate(stage.body) if i.op == "idx" and i.attr("axis") == ax} for ax in axes}
    every = set().union(*uses.values())
    accesses = []
    for ins in stage.body:
        if not every.intersection(ins.args):
            continue
        if ins.op != "load":
            return False
        nd = len(program.buffers[ins.attr("buffer")].shape)
        if every.intersection(ins.args[nd:]):           # the mask
            return False
        accesses.append((program.buffers[ins.attr("buffer")].shape, ins.args[:nd]))
    for store in stage.stores:
        if store.value in every:
            return False
        accesses.append((program.buffers[store.buffer].shape, store.index))
    if any(every.intersection(r[1:]) for r in stage.reduce):
        return False
    for shape, index in accesses:
        hits = [p for p, v in enumerate(index) if v in every]
        if not hits:
            continue
        p = hits[0]
        if hits != list(range(p, p + len(sizes))) or tuple(shape[p:p + len(sizes)]) != tuple(sizes):
            return False
        if any(index[p + j] not in uses[ax] for j, ax in enumerate(axes)):
            return False
    return True
