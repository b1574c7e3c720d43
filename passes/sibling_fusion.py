"""Sibling fusion: a pointwise kernel over exactly the domain a reduction walks is
folded into that reduction's stage, so the data is read once and the values both
need (loads, tanh(x), sigmoid(x)) are computed once.

Why: a loss and its gradient usually come out of fusion as two kernels over the
same elements, `sum(f(x))` and `g(x)`; each reads x and recomputes the shared
subexpressions. One pass over x halves the traffic and the arithmetic (4M-element
sum(tanh(x*a+b)*sigmoid(x)) with its gradient: two kernels, 2.7 ms; one, see
benchmarks/run.py).

The map kernel (one map stage, empty inner domain, outer = O + I) joins the first
stage of a reduction kernel (outer O, stage 0 a reduce stage over I): loop index k
means the same axis in both, so the map's body is appended to the stage's body
(identical instructions shared) and its stores become stores of the reduce stage,
done at every inner point. Only pairs with no dependency between them, direct or
through other kernels, are merged.
"""
from __future__ import annotations

from .kernel_dag import kernel_dag
from .program import Instr, LoopKernel, Stage, Store


def fuse_siblings(kernels: dict, base) -> dict:
    """kernels: {number: kernel}; base(buffer) -> the buffer whose memory it is.
    Returns the dict with each mergeable map kernel folded into a reduction."""
    kernels = dict(kernels)
    while True:
        pair = _find_pair(kernels, base)
        if pair is None:
            return kernels
        red_no, map_no = pair
        kernels[red_no] = merge(kernels[red_no], kernels.pop(map_no))


def _is_map(k) -> bool:
    return (isinstance(k, LoopKernel) and len(k.stages) == 1 and not k.stages[0].reduce
            and k.stages[0].inner == () and not any(i.op == "result" for i in k.stages[0].body))


def _is_reduction(k) -> bool:
    return isinstance(k, LoopKernel) and bool(k.stages) and bool(k.stages[0].reduce) and bool(k.stages[0].inner)


def _find_pair(kernels: dict, base):
    maps = [no for no, k in kernels.items() if _is_map(k)]
    reds = [no for no, k in kernels.items() if _is_reduction(k)]
    if not maps or not reds:
        return None
    dag = None
    for r in reds:
        red = kernels[r]
        domain = tuple(red.outer) + tuple(red.stages[0].inner)
        for m in maps:
            if tuple(kernels[m].outer) != domain:
                continue
            if dag is None:
                dag = kernel_dag(kernels, base)
            if not dag.has_path(r, m) and not dag.has_path(m, r):
                return r, m
    return None


def merge(red: LoopKernel, mp: LoopKernel) -> LoopKernel:
    """The reduction kernel with mp's body and stores added to its first stage."""
    st = red.stages[0]
    body = list(st.body)
    seen = {ins: n for n, ins in enumerate(body)}
    remap = {}
    for n, ins in enumerate(mp.stages[0].body):
        new = Instr(ins.op, tuple(remap[a] for a in ins.args), ins.attrs, ins.dtype)
        if new not in seen:
            seen[new] = len(body)
            body.append(new)
        remap[n] = seen[new]
    stores = list(st.stores) + [Store(s.buffer, tuple(remap[a] for a in s.index), remap[s.value])
                                for s in mp.stages[0].stores]
    first = Stage(st.inner, body, st.reduce, stores)
    name = red.name + "+" + mp.name.split("_", 1)[1]
    source = ", ".join(x for x in (red.source, mp.source) if x)
    return LoopKernel(name[:60], red.outer, [first] + list(red.stages[1:]), source)
