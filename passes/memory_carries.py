"""A loop's carry buffers that may share memory although their lifetimes overlap.

A carry is double buffered (passes/loop.py): the body reads `state`, writes `next`,
and the loop copies next into state after each step; before step 0 it copies `init`
into state. By lifetimes alone the three need three slots. Two rules let the memory
plan (passes/memory.py) give them fewer:

- {state, next}: when, within a step, every kernel that reads state runs before the
  first kernel that writes next, or is that kernel and writes next over state point
  by point (passes/memory_inplace.pointwise_in_place), next may be written over the
  state it replaces. An LSTM's backward step reads dh in its pointwise kernel, whose
  product then writes dh_next; its cell update c_next = f·c + i·g reads c where it
  writes c_next. The copy after the step is then a copy onto itself, which the
  backends skip (passes/loop.py: `copies_after_step`).
- {init, state} and {init, next}: an init temp that nothing reads after the loop's
  start (its copy into state, passes/memory.lifetimes) may be the state's memory (the
  copy is then onto itself too: `copies_before_loop`), or next's, which the body
  writes only after that copy.

Every buffer here is a whole temp (no view, no part) reached by the body only as
itself, and the three have one dtype and shape (a carry's type is its init's).
"""
from __future__ import annotations

from .loop import ScanLoop, all_loops, whole_temps
from .memory_inplace import pointwise_in_place
from .program import LoopKernel


def carry_pairs(program, live: dict, spans: dict) -> set:
    """{frozenset((a, b))} of carry buffers that may share memory (module docstring).
    live: temp -> (first, last) position (passes/memory.lifetimes); spans: id(loop) ->
    (start, end) positions of each ScanLoop."""
    pairs = set()
    for loop in all_loops(program.schedule):
        start, _ = spans[id(loop)]
        for c in loop.carries:
            if not whole_temps(program, c.state, c.next) or c.state == c.next:
                continue
            if _next_over_state(program, loop, c.state, c.next):
                pairs.add(frozenset((c.state, c.next)))
            if c.init is not None and c.init not in (c.state, c.next) and whole_temps(program, c.init, c.state) \
                    and live[c.init][1] == start:      # read nowhere after the loop starts, body included
                pairs |= {frozenset((c.init, c.state)), frozenset((c.init, c.next))}
    return pairs


def _next_over_state(program, loop: ScanLoop, state: int, nxt: int) -> bool:
    """Within one step, is state read only before next is first written, or by that
    same kernel point by point? The body reaches both only as themselves, never
    writes state, and writes next before reading it."""
    reads, writes = [], []
    for n, k in enumerate(loop.body):
        touched = k.reads() | k.writes()
        if isinstance(k, ScanLoop) and {program.root(b) for b in touched} & {state, nxt}:
            return False
        if any(program.root(b) in (state, nxt) and b not in (state, nxt) for b in touched) or state in k.writes():
            return False
        if state in k.reads():
            reads.append(n)
        if nxt in k.writes():
            writes.append(n)
        if nxt in k.reads() and (not writes or writes[0] == n):
            return False
    if not writes or not reads or max(reads) < writes[0]:
        return bool(writes)
    k = loop.body[writes[0]]
    return max(reads) == writes[0] and isinstance(k, LoopKernel) and pointwise_in_place(k, state, nxt)
