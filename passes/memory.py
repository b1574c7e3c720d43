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

from nngraph.types import concrete_shape, np_dtype, size_product


def lifetimes(program) -> dict:
    """temp buffer id -> (first, last) schedule positions. A kernel's `touches()` (an
    all-reduce in flight: passes/collective.py) count as uses too."""
    live = {}
    temps = {b for b, buf in program.buffers.items() if buf.kind == "temp"}
    for pos, k in enumerate(program.schedule):
        used = k.reads() | k.writes() | (k.touches() if hasattr(k, "touches") else set())
        touched = {program.root(b) for b in used}
        for b in touched & temps:
            first, last = live.get(b, (pos, pos))
            live[b] = (min(first, pos), max(last, pos))
    return live


def _bytes_sig(buf):
    coef, syms = size_product(buf.shape)
    return coef * np_dtype(buf.dtype).itemsize, tuple(sorted(syms.items()))


def plan_memory(program) -> dict:
    """temp buffer id -> slot number: greedy interval colouring, preferring a free
    slot that already held a buffer of the same (symbolic) byte size, then the
    largest free slot."""
    live = lifetimes(program)
    slots: list = []     # [last position used, size signature of the largest member (static part)]
    plan = {}
    for b in sorted(live, key=lambda b: (live[b][0], b)):
        first, last = live[b]
        sig = _bytes_sig(program.buffers[b])
        free = [s for s in range(len(slots)) if slots[s][0] < first]
        exact = [s for s in free if sig in slots[s][2]]
        if exact:
            s = exact[0]
        elif free:
            s = max(free, key=lambda s: max(c for c, _ in slots[s][2]))
        else:
            s = len(slots)
            slots.append([-1, None, set()])
        slots[s][0] = last
        slots[s][2].add(sig)
        plan[b] = s
    return plan


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
    for pos in range(len(program.schedule)):
        best = max(best, sum(nbytes(program.buffers[b], env) for b, (f, l) in live.items() if f <= pos <= l))
    return best
