"""Memory plan: temp buffers share arena slots when their lifetimes do not overlap.

A temp's lifetime is the closed interval of schedule positions from the first
kernel that writes it to the last kernel that reads or writes it. Two temps may
share a slot only when their intervals are disjoint, so a kernel never reads and
writes the same slot through two different buffers. Sizes may be symbolic: a
slot's size is the largest of its buffers' sizes for the sizes bound at a call,
so the plan is made once and serves every call. Inputs, parameters, constants,
outputs and updates live outside the arena (outputs and updates are handed to the
caller; parameter updates are committed by the runtime after a successful call).
"""
from __future__ import annotations

from nngraph.types import concrete_shape, np_dtype

from .loop import ScanLoop, all_loops
from .memory_carries import carry_pairs
from .memory_inplace import in_place_pairs, written_over
from .memory_order import signature, size_key, slot_at_least, slot_dominates


def positions(schedule) -> list:
    """(kernel, position, loops) for every kernel that touches buffers, in order: a
    ScanLoop's body kernels get positions of their own, and `loops` lists the
    (start, end) position ranges of the loops around a kernel, innermost last. A
    loop takes one position of its own first (its carries' init copies), then its
    body's, then one more (the carry copies after a step)."""
    out = []

    def walk(sched, loops):
        for k in sched:
            if isinstance(k, ScanLoop):
                start = len(out)
                out.append((k, start, loops))
                span = [start, None]
                walk(k.body, loops + (span,))
                span[1] = len(out)
                out.append((k, span[1], loops))
            else:
                out.append((k, len(out), loops))

    walk(schedule, ())
    return [(k, pos, tuple(tuple(s) for s in loops)) for k, pos, loops in out]


def lifetimes(program) -> dict:
    """temp buffer id -> (first, last) positions (`positions`). A kernel's `touches()` (an
    all-reduce in flight: passes/collective.py) count as uses too. A temp touched inside
    a loop and also outside it, or by the loop itself (carries, stacked buffers), lives
    over the whole loop: its value crosses steps. A carry's init is read only where the
    loop starts (copied into the state), so its life ends there."""
    live, seen_in, started = {}, {}, set()
    temps = {b for b, buf in program.buffers.items() if buf.kind == "temp"}
    for k, pos, loops in positions(program.schedule):
        if isinstance(k, ScanLoop):
            used = k.own_buffers(at_end=id(k) in started)
            started.add(id(k))
        else:
            used = k.reads() | k.writes() | (k.touches() if hasattr(k, "touches") else set())
        for b in {program.root(b) for b in used} & temps:
            first, last = live.get(b, (pos, pos))
            live[b] = (min(first, pos), max(last, pos))
            seen_in.setdefault(b, set()).add(loops)
    for b, contexts in seen_in.items():
        first, last = live[b]
        for ctx in contexts:
            for start, end in ctx:
                if first < start or last > end:       # crosses this loop's steps
                    first, last = min(first, start), max(last, end)
        live[b] = (first, last)
    return live


def loop_spans(schedule) -> dict:
    """id(ScanLoop) -> (its first, its last position) (`positions`)."""
    spans = {}
    for k, pos, _ in positions(schedule):
        if isinstance(k, ScanLoop):
            first, _ = spans.get(id(k), (pos, pos))
            spans[id(k)] = (first, pos)
    return spans


def plan_memory(program) -> dict:
    """temp buffer id -> slot number, largest buffers first (greedy by size, as
    TFLite's arena planner): each buffer goes to a slot none of whose members' lifetimes
    overlaps its own (`_choose_slot` picks among them); a new slot when none is free. Placing by first
    use instead let small late temps take the big slot a large one could reuse (LSTM(256)
    step: the [T, N, 1024] input projection's slot was held by a 1 MiB transpose when
    the [T, N, 1024] gate gradient began, so each got its own: 6.5 MiB more).
    Buffers whose lifetimes overlap share a slot only when passes/memory_inplace.py
    (stacked per-step values) or passes/memory_carries.py (a loop's carries) says one
    is written over the other step by step. Which free slot: `_choose_slot`."""
    live = lifetimes(program)
    spans = loop_spans(program.schedule)
    shared = in_place_pairs(program, live, spans) | carry_pairs(program, live, spans)
    slots: list = []     # [member lifetimes, size signatures, size key of the first (largest) member]
    plan = {}
    sigs = {b: signature(program.buffers[b]) for b in live}
    for b in sorted(live, key=lambda b: (tuple(-x for x in size_key(sigs[b])), live[b][0], b)):
        first, last = live[b]
        free = [s for s in range(len(slots))
                if all(l < first or f > last or frozenset((b, m)) in shared for f, l, m in slots[s][0])]
        s = _choose_slot(slots, free, sigs[b])
        if s is None:
            s = len(slots)
            slots.append([[], set(), size_key(sigs[b])])
        slots[s][0].append((first, last, b))
        slots[s][1].add(sigs[b])
        plan[b] = s
    return plan


def _choose_slot(slots: list, free: list, sig: tuple):
    """The free slot a buffer of byte signature `sig` goes to (None: a new one): one
    holding a buffer of the same size; else the smallest that is provably at least
    `sig` (passes/memory_order.py); else the one that grows least at every call: a
    free slot no other free slot is provably larger than (a [256, 1024] weight
    gradient over a dead [T, N, 256] stack rather than a slot of [N, 256] carries)."""
    exact = [s for s in free if sig in slots[s][1]]
    holds = [s for s in free if slot_at_least(slots[s][1], sig)]
    if exact or holds:
        return (exact or sorted(holds, key=lambda s: (slots[s][2], -s)))[0]
    largest = [s for s in free if not any(slot_dominates(slots[r][1], slots[s][1])
                                          and not slot_dominates(slots[s][1], slots[r][1]) for r in free)]
    return max(largest, key=lambda s: (slots[s][2], -s)) if largest else None


def note_in_place(program) -> None:
    """Name, in each loop's notes (fn.dump("kernels"), fn.stats()["loops"]), the per-step
    results the plan writes over a per-step input (passes/memory_inplace.py)."""
    name = lambda b: "@" + program.buffers[b].name     # noqa: E731
    notes: dict = {}
    for loop, x, y in written_over(program, lifetimes(program), loop_spans(program.schedule)):
        if program.plan.get(x, -1) == program.plan.get(y, -2):
            notes.setdefault(id(loop), []).append(f"{name(y)} over {name(x)}")
    for loop in all_loops(program.schedule):
        if id(loop) in notes:
            loop.notes["in place"] = notes[id(loop)]


def nbytes(buf, env: dict) -> int:
    """Bytes of `buf` for the bound sizes, in Python ints (never wrapping at 2**63)."""
    n = 1
    for d in concrete_shape(buf.shape, env):
        n *= int(d)
    return n * np_dtype(buf.dtype).itemsize


def region_of(program, b: int):
    """The arena region temp b lives in: its plan slot, or ("own", b) for a temp the
    plan leaves out (a hand-built Program's)."""
    return program.plan.get(b, ("own", b))


def slot_sizes(program, env: dict) -> dict:
    """arena region -> bytes for the bound sizes `env`: the largest temp of each."""
    sizes = {}
    for b in program.buffers.values():
        if b.kind == "temp":
            s = region_of(program, b.id)
            sizes[s] = max(sizes.get(s, 0), nbytes(b, env))
    return sizes


def arena_layout(program, env: dict, align: int = 1):
    """(region -> byte offset, total bytes) of one call's arena: the regions of
    `slot_sizes` one after another, each rounded up to `align` bytes."""
    offsets, total = {}, 0
    for s, n in slot_sizes(program, env).items():
        offsets[s] = total
        total += (n + align - 1) // align * align
    return offsets, total


def peak_bytes(program, env: dict | None = None, align: int = 1) -> int:
    """Intermediate memory of one call: the arena's size for `env` (regions rounded up
    to `align` bytes, as a runtime that aligns them allocates it)."""
    return arena_layout(program, env or {}, align)[1]


def live_peak_bytes(program, env: dict | None = None) -> int:
    """The lower bound any plan must meet: the most temp bytes live at one kernel."""
    env = env or {}
    live = lifetimes(program)
    best = 0
    for pos in range(len(positions(program.schedule))):
        best = max(best, sum(nbytes(program.buffers[b], env) for b, (f, l) in live.items() if f <= pos <= l))
    return best
