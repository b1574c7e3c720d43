"""A one-hot term added along a row becomes one addition at the label: a rewrite of
a LoopKernel's stages that the LLVM backend applies to each loop function it emits
(as passes/row_reuse.py; passes/one_hot_gather.py holds the pattern both share).

Cross-entropy's gradient stores softmax(z) / N - onehot(y) / N: as fused, every
element compares its column index with the label, converts, multiplies and adds,
for one element per row that is not zero (over 1000 classes, about a third of the
instructions of the row's last pass). A map stage over one inner axis that stores
`add(X, mul(cast(equal(L, j)), K))` (any operand order; K and L the same along the
row) into the whole row of a buffer instead stores X, and a stage after it with no
inner domain adds `where(0 <= L < n, K, 0)` to the element at L clamped into
[0, n). Each element gets the same single rounding (X + K at the label, X + 0
elsewhere). The added stage writes an element the stage before it wrote, in the
same row: fine where one thread runs a row's stages in order (the LLVM backend), not
a rule the Program states for every backend, so the Program itself is left alone.
"""
from __future__ import annotations

from .one_hot_gather import clamped_label, copy_instr, depends_on_axis, has_elements, masked_term
from .program import Instr, Stage, Store, instr


def scatter_one_hot_adds(program, outer, stages):
    """(outer, stages) with each row stage's one-hot addend moved to one addition at
    the label (see above)."""
    stages = list(stages)
    t = 0
    while outer and t < len(stages):
        split = _split(program, stages[t], len(outer))
        if split is not None:
            stages[t:t + 1] = split
            stages[t + 2:] = [_shift_results(s, t) for s in stages[t + 2:]]
            t += 1
        t += 1
    return outer, stages


def _row_store(program, st: Stage, nouter: int):
    """The store of map stage st that writes a whole buffer row at its loop indices."""
    for store in st.stores:
        buf = program.buffers[store.buffer]
        if store.accumulate or len(buf.shape) != nouter + 1 or st.body[store.value].dtype != buf.dtype:
            continue
        if all(st.body[a].op == "idx" and st.body[a].attr("axis") == k for k, a in enumerate(store.index)):
            if sum(x.buffer == store.buffer for x in st.stores) == 1:
                return store
    return None


def _split(program, st: Stage, nouter: int):
    if st.reduce or len(st.inner) != 1 or not has_elements(st.inner[0]):
        return None
    store = _row_store(program, st, nouter)
    if store is None or st.body[store.value].op != "add":
        return None
    varying = depends_on_axis(st.body, nouter)
    for term, rest in (st.body[store.value].args, st.body[store.value].args[::-1]):
        found = masked_term(st.body, term, nouter, varying)
        if found is not None and not varying[found[1]] and st.body[term].dtype == st.body[rest].dtype:
            row = Stage(st.inner, st.body, st.reduce,
                        [Store(x.buffer, x.index, rest) if x is store else x for x in st.stores]).compact()
            return [row, _label_add(st, store, found, nouter)]
    return None


def _label_add(st: Stage, store: Store, found, nouter: int) -> Stage:
    """The stage that adds where(0 <= L < n, K, 0) at the row's element L."""
    label, addend = found
    new: list = []
    memo: dict = {}
    index = [copy_instr(st.body, a, memo, new, None) for a in store.index[:nouter]]
    inside, at = clamped_label(st.body, label, st.inner[0], memo, new)
    k = copy_instr(st.body, addend, memo, new, None)
    dt = st.body[addend].dtype
    new.append(instr("const", (), dt, value=0.0))
    new.append(instr("where", (inside, k, len(new) - 1), dt))
    return Stage((), new, (), [Store(store.buffer, tuple(index) + (at,), len(new) - 1, accumulate=True)])


def _shift_results(st: Stage, inserted_after: int) -> Stage:
    """st with its `result` references to stages after `inserted_after` moved up one."""
    def moved(ins: Instr) -> Instr:
        if ins.op == "result" and ins.attr("stage") > inserted_after:
            return instr("result", ins.args, ins.dtype, stage=ins.attr("stage") + 1, slot=ins.attr("slot"))
        return ins
    return Stage(st.inner, [moved(i) for i in st.body], st.reduce, list(st.stores))
