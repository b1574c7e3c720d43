"""A parameter update that does not need a loop runs before it, so what it alone reads
need not live across the loop.

The schedule is the build order (passes/lower/assemble.py), and `ng.grad` builds the
gradients of the layers after a recurrent one after that layer's backward loop has
been built: an LSTM followed by Dense(10) computes the Dense weight's update
V - lr·hTᵀ·dlogits after the backward loop, so h[T-1] ([N, H]) and the logits'
gradient ([N, 10]) live across it, at the peak of the step, though neither loop
nor update needs the other.

`updates_before_loops(schedule, root)` moves each kernel that writes nothing but
parameter updates (which no kernel reads; the runtime commits them after a
successful call, so running one earlier changes nothing a caller sees) to the
earliest position where no kernel it passes writes what it reads or touches what it
writes, when it passes a loop there and that ends, before the loop, the life of a
temp it reads (no kernel from that loop on reads the temp). Earliest, not just before
the loop: h[T-1] then dies before the backward loop's initial dh is made. Moving a
kernel that writes no temp earlier never makes a temp live longer.
"""
from __future__ import annotations

from .loop import ScanLoop


def updates_before_loops(schedule: list, buffers: dict, root) -> list:
    """`schedule` with such updates moved (module docstring); root(b): the buffer
    whose memory b is."""
    schedule = list(schedule)
    for k in list(schedule):
        if isinstance(k, ScanLoop) or not _writes_only_updates(k, buffers, root):
            continue
        at = next(i for i, x in enumerate(schedule) if x is k)
        to, loop = _earliest(schedule, at, root)
        if loop is not None and _ends_a_life(schedule, at, loop, buffers, root):
            schedule.insert(to, schedule.pop(at))
    return schedule


def _roots(bufs, root) -> set:
    return {root(b) for b in bufs}


def _touches_of(x) -> set:
    return x.touches() if hasattr(x, "touches") else set()


def _touched(x) -> set:
    """What kernel x reads or writes (an all-reduce in flight touches its buffers too)."""
    return x.reads() | x.writes() | _touches_of(x)


def _writes_only_updates(k, buffers: dict, root) -> bool:
    return bool(k.writes()) and all(buffers[b].kind == "update" for b in _roots(k.writes(), root))


def _earliest(schedule: list, at: int, root) -> tuple:
    """(the earliest position kernel `at` can move to, passing no kernel it depends on
    or that depends on it; the position of the first loop it passes there, or None)."""
    k = schedule[at]
    reads, writes = _roots(k.reads(), root), _roots(k.writes(), root)
    to, loop = at, None
    for i in range(at - 1, -1, -1):
        x = schedule[i]
        if reads & _roots(x.writes() | _touches_of(x), root) or writes & _roots(_touched(x), root):
            break
        to, loop = i, (i if isinstance(x, ScanLoop) else loop)
    return to, loop


def _ends_a_life(schedule: list, at: int, to: int, buffers: dict, root) -> bool:
    """Does a temp kernel `at` reads have no reader from the loop at `to` on but it?"""
    later = set()
    for i, x in enumerate(schedule[to:], start=to):
        if i != at:
            later |= _roots(_touched(x), root)
    return any(buffers[b].kind == "temp" and b not in later for b in _roots(schedule[at].reads(), root))
