"""softmax's exp(a - log s) as exp(a) * (1 / s), where s is the row's sum of exp(a)
(a rewrite of a LoopKernel's stages that the LLVM backend applies to each loop
function it emits, before passes/row_reuse.py).

softmax(x) is built as exp(log_softmax(x)) (so that log(softmax(x)) simplifies), and
fused it walks each row three times: m = max x, s = sum exp(x - m), then
exp((x - m) - log s). The last pass computes a second exponential per element. As
exp(x - m) * (1 / s) its exponential is the one the sum stage computes, which
row_reuse then stores and reads back: one exponential per element and one division
per row. It is also more accurate: exp((x - m) - log s) carries log s's rounding
(about |log s| * 2**-24 relative, several ulp for a thousand classes) and the
subtraction's, where the quotient rounds twice more at half an ulp each.

When: stage t computes exp(sub(a, log(result))) where a is x - max x (passes/exp_sign.py:
the row's maximum of that same x, so one term of s is exp(0) = 1 and s >= 1, finite)
and the result is a "sum" reduction of an earlier stage over the same inner domain
whose reduced value is exp of a value structurally equal to a, in one float dtype,
with no stage from there to t storing into a buffer a loads.
"""
from __future__ import annotations

from .exp_sign import loads_written, minus_row_max
from .program import Instr, Stage, Store, instr
from .row_reuse import value_keys


def exps_as_quotients(outer, stages):
    """(outer, stages) with each exp(a - log s) whose s sums exp(a) over the row
    written exp(a) * (1 / s) (see above)."""
    stages = list(stages)
    for t in range(len(stages)):
        while (n := next((n for n in range(len(stages[t].body)) if _quotient_of(stages, t, n)), None)) is not None:
            stages[t] = _as_quotient(stages[t], n)
    return outer, stages


def _quotient_of(stages, t: int, n: int) -> bool:
    """Whether instruction n of stage t is exp(a - log s), s the row's sum of exp(a)."""
    body = stages[t].body
    e = body[n]
    if e.op != "exp" or body[e.args[0]].op != "sub":
        return False
    a, lg = body[e.args[0]].args
    if body[lg].op != "log" or body[body[lg].args[0]].op != "result":
        return False
    res = body[body[lg].args[0]]
    s, slot = res.attr("stage"), res.attr("slot")
    if s is None or s >= t or slot is None or stages[s].inner != stages[t].inner:
        return False
    early = stages[s]
    if slot >= len(early.reduce) or early.reduce[slot][0] != "sum":
        return False
    summed = early.body[early.reduce[slot][1]]
    if summed.op != "exp" or not minus_row_max(stages, t, a):
        return False
    if len({e.dtype, body[lg].dtype, res.dtype, body[a].dtype, summed.dtype}) != 1:
        return False
    if value_keys(early.body)[summed.args[0]] != value_keys(body)[a]:
        return False
    return not loads_written(body, a, stages[s:t + 1])


def _as_quotient(st: Stage, n: int) -> Stage:
    """Stage st with instruction n, exp(a - log s), replaced by exp(a) * (1 / s); the
    new instructions go just before it, every later position moves up by three."""
    e = st.body[n]
    a, lg = st.body[e.args[0]].args
    s = st.body[lg].args[0]
    new = [instr("const", dtype=e.dtype, value=1.0), Instr("div", (n, s), (), e.dtype),
           Instr("exp", (a,), e.attrs, e.dtype), Instr("mul", (n + 2, n + 1), (), e.dtype)]

    def at(k):
        return k if k < n else k + 3

    later = [Instr(i.op, tuple(at(k) for k in i.args), i.attrs, i.dtype) for i in st.body[n + 1:]]
    reduce = tuple((r[0],) + tuple(at(k) for k in r[1:]) for r in st.reduce)
    stores = [Store(x.buffer, tuple(at(k) for k in x.index), at(x.value), x.accumulate) for x in st.stores]
    return Stage(st.inner, list(st.body[:n]) + new + later, reduce, stores).compact()
