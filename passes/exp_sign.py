"""exp(v - max(v)) marked as the exponential of a non-positive argument (a rewrite of a
LoopKernel's stages that the LLVM backend applies to each loop function it emits, as
it does passes/row_reuse.py).

Softmax, log-softmax and cross-entropy subtract each row's maximum before the
exponential: x = v - m with m the maximum of v over the row, so x <= 0 (or NaN, where
the row holds a NaN or an infinity). Knowing the sign, exp needs no upper clamp, and
without AVX-512 (no vscalef) it scales the polynomial by 2**n in one shift and two
multiplies instead of building two powers of two (codegen/llvm/mathfns.py,
FloatMath.exp(nonpositive=True)): about a fifth of the instructions of a softmax row.

When: stage t computes exp(sub(v, result)) where the result is the "max" reduction
of an earlier stage s over the same inner domain, and v is the same value that
stage s reduced (equal instructions on equal loads and results, compared
structurally), all in one float dtype, and no stage from s to t stores into a buffer
v loads. Then every v that stage t meets was among the values stage s took the
maximum of, at the same outer point, so v <= m exactly. The exp instruction gets the
attribute nonpositive=True; a backend that does not read it computes the same exp.
"""
from __future__ import annotations

from .program import Instr, Stage
from .row_reuse import value_keys

NONPOSITIVE = "nonpositive"


def mark_nonpositive_exps(outer, stages):
    """(outer, stages) with each exp of a row's value minus the row's maximum marked
    nonpositive (see above)."""
    stages = list(stages)
    for t, st in enumerate(stages):
        marks = [n for n, ins in enumerate(st.body) if ins.op == "exp" and minus_row_max(stages, t, ins.args[0])]
        if marks:
            body = list(st.body)
            for n in marks:
                ins = body[n]
                body[n] = Instr(ins.op, ins.args, tuple(sorted(ins.attrs + ((NONPOSITIVE, True),))), ins.dtype)
            stages[t] = Stage(st.inner, body, st.reduce, list(st.stores))
    return outer, stages


def minus_row_max(stages, t: int, arg: int) -> bool:
    """Whether value `arg` of stage t is v - m, m the row maximum of that same v."""
    late = stages[t]
    sub = late.body[arg]
    if sub.op != "sub" or late.body[sub.args[1]].op != "result":
        return False
    v, res = late.body[sub.args[0]], late.body[sub.args[1]]
    s, slot = res.attr("stage"), res.attr("slot")
    if s is None or s >= t or slot is None:
        return False
    early = stages[s]
    if early.inner != late.inner or slot >= len(early.reduce) or early.reduce[slot][0] != "max":
        return False
    reduced = early.reduce[slot][1]
    if not (sub.dtype == v.dtype == res.dtype == early.body[reduced].dtype) or not sub.dtype.startswith("float"):
        return False
    if value_keys(early.body)[reduced] != value_keys(late.body)[sub.args[0]]:
        return False
    return not loads_written(late.body, sub.args[0], stages[s:t + 1])


def loads_written(body, value: int, stages) -> bool:
    """Whether a buffer that `value` (of `body`) loads is stored by one of `stages`."""
    loaded, stack, seen = set(), [value], set()
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        if body[k].op == "load":
            loaded.add(body[k].attr("buffer"))
        stack.extend(body[k].args)
    return any(x.buffer in loaded for st in stages for x in st.stores)
