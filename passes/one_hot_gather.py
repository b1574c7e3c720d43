"""A sum over a one-hot mask becomes a gather: a Program rewrite of reduce stages.

Cross-entropy with class ids is sum_j onehot(y)_j * log_softmax(z)_j (and its
gradient sums onehot(y)_j / N): as fused, each such stage walks the whole row, compares
every column index with the label and multiplies, to keep one element. With C
classes that is C loads, compares and multiplies per row where one load would do
(softmax cross-entropy over 1000 classes: one of the four passes over every row).

The stage is recognised when it has one inner axis k of a static size n > 0 (a
symbolic size may be 0 at run time, where a gather would read outside the row), no
stores, and every value it
reduces is a float sum of `mul(cast(equal(L, J)), X)` (either operand order) with
J the loop index k (or an integer cast of it) and L a value that does not depend on
k (the label, loaded at the outer point). At j != L the product is 0 * X_j and at
j == L it is X_L, so the sum is X_L when 0 <= L < n and 0 otherwise. The stage is
rewritten with no inner domain: its body once, with `idx k` replaced by L clamped
into [0, n) (the load stays inside the buffer), and each reduced value by
`where(0 <= L < n, value, 0)`. Results are equal for finite X (the one-hot sum adds
exact zeros); where some other column holds an infinity or NaN the one-hot sum gave
NaN (0 * inf) and the gather gives X_L, as a gather in the graph would.
"""
from __future__ import annotations

from nngraph.types import is_float, is_int

from .program import Instr, LoopKernel, Stage, instr


def gather_one_hot_sums(kernels):
    """Rewrite, in place, every stage of these LoopKernels that sums over a one-hot
    mask (see above); returns how many stages changed."""
    changed = 0
    for k in kernels:
        if not isinstance(k, LoopKernel):
            continue
        for s_no, st in enumerate(k.stages):
            new = gathered_stage(st, len(k.outer))
            if new is not None:
                k.stages[s_no] = new
                changed += 1
    return changed


def gathered_stage(st: Stage, axis: int) -> Stage | None:
    """The stage as a gather at the label, or None where it is not a one-hot sum over
    loop axis `axis` (its only inner axis)."""
    if len(st.inner) != 1 or not has_elements(st.inner[0]) or st.stores or not st.reduce:
        return None
    body = st.body
    varying = depends_on_axis(body, axis)
    labels = set()
    for red in st.reduce:
        if red[0] != "sum" or not is_float(body[red[1]].dtype):
            return None
        label = masked_label(body, red[1], axis, varying)
        if label is None:
            return None
        labels.add(label)
    if len(labels) != 1:
        return None
    return _rewrite(st, axis, labels.pop())


def has_elements(size) -> bool:
    """Whether an axis of this size surely has an element to read at the clamped label:
    a static size above 0 (a symbolic one may be 0 at run time, where the row's loop
    read nothing and a gather would read outside the buffer)."""
    return isinstance(size, int) and size > 0


def depends_on_axis(body, axis) -> list:
    """For each instruction, whether its value varies with loop index `axis`."""
    dep = []
    for ins in body:
        dep.append((ins.op == "idx" and ins.attr("axis") == axis) or any(dep[a] for a in ins.args))
    return dep


def _is_axis_index(body, v, axis) -> bool:
    ins = body[v]
    if ins.op == "cast" and is_int(ins.dtype):
        ins = body[ins.args[0]]
    return ins.op == "idx" and ins.attr("axis") == axis


def masked_label(body, v, axis, varying):
    """L where body[v] is mul(cast(equal(L, index)), X) in either order, else None."""
    term = masked_term(body, v, axis, varying)
    return None if term is None else term[0]


def masked_term(body, v, axis, varying):
    """(L, X) where body[v] is mul(cast(equal(L, index)), X) in either order, with
    `index` loop index `axis` (or an integer cast of it) and L an integer that does
    not vary with it; else None."""
    ins = body[v]
    if ins.op != "mul":
        return None
    for mask, other in (ins.args, ins.args[::-1]):
        m = body[mask]
        if m.op != "cast" or body[m.args[0]].op != "equal":
            continue
        a, b = body[m.args[0]].args
        for label, index in ((a, b), (b, a)):
            if _is_axis_index(body, index, axis) and not varying[label] and is_int(body[label].dtype):
                return label, other
    return None


def _rewrite(st: Stage, axis: int, label: int) -> Stage:
    body = st.body
    new: list = []
    memo: dict = {}
    inside, index = clamped_label(body, label, st.inner[0], memo, new)
    reduce = []
    for red in st.reduce:
        v = copy_instr(body, red[1], memo, new, (axis, index))
        dt = body[red[1]].dtype
        zero = _append(new, instr("const", (), dt, value=0.0))
        reduce.append(("sum", _append(new, instr("where", (inside, v, zero), dt))))
    return Stage((), new, tuple(reduce), [])


def clamped_label(body, label, n, memo, new) -> tuple:
    """Copy label L (with what it needs, memo as copy_instr's) into `new` and append
    (0 <= L < n) and L clamped into [0, n) as int64 (n a static size > 0); returns
    their positions."""
    lab = copy_instr(body, label, memo, new, None)
    if body[label].dtype != "int64":
        lab = _append(new, Instr("cast", (lab,), (("dtype", "int64"),), "int64"))
    zero = _append(new, instr("const", (), "int64", value=0))
    size = _append(new, instr("const", (), "int64", value=n))
    low = _append(new, instr("greater_equal", (lab, zero), "bool"))
    high = _append(new, instr("less", (lab, size), "bool"))
    inside = _append(new, instr("logical_and", (low, high), "bool"))
    return inside, _append(new, instr("where", (inside, lab, zero), "int64"))


def _append(new: list, ins: Instr) -> int:
    new.append(ins)
    return len(new) - 1


def copy_instr(body, v, memo, new, subst) -> int:
    """Copy instruction v and what it needs into `new`, `idx axis` replaced by subst's
    index value (subst = (axis, index) or None); returns its position in `new`."""
    if v in memo:
        return memo[v]
    ins = body[v]
    if subst is not None and ins.op == "idx" and ins.attr("axis") == subst[0]:
        memo[v] = subst[1]
        return subst[1]
    args = tuple(copy_instr(body, a, memo, new, subst) for a in ins.args)
    new.append(Instr(ins.op, args, ins.attrs, ins.dtype))
    memo[v] = len(new) - 1
    return memo[v]
