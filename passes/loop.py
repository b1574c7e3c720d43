"""The loop construct of a Program: a sub-schedule repeated `length` times.

    ScanLoop(name, length, body, carries, slices, reverse)

At every step t = 0 .. length - 1 (the time index is length - 1 - t when
`reverse`), the loop

1. points every `StepSlice`'s step buffer at slice `time` of its stacked buffer
   (a buffer whose leading axis is time: per-step inputs xs read by the body and
   per-step outputs ys written by it), so no per-step copy is made;
2. runs the kernels of `body` in order (LoopKernels, MatmulKernels, nested loops);
3. copies every `Carry`'s `next` buffer (written by the body) into its `state`
   buffer (read by the body).

Before step 0 each carry's `init` (when not None) is copied into `state`; after the
loop `state` holds the final carry (length 0: the initial one). A carry is double
buffered (state, next), so a body may read the old carry after writing parts of
the new one. Where the memory plan makes two of them one memory (next written over
the state it replaces, an init that dies at the loop's start: passes/memory_carries.py),
the copy between them is a copy onto itself, which backends skip: they copy what
`copies_before_loop` and `copies_after_step` list.

A step buffer is a Buffer of kind "step" with `view_of` = its stacked buffer and
the stacked buffer's shape without the time axis. It owns no memory (`root`
follows it to the stacked buffer, so the memory plan keeps that alive over the
whole loop), and its address changes per step: the native entry point writes it
into its pointer array (codegen/llvm/loop.py), the Triton driver into its buffer
dict (codegen/triton/loop.py), the Program interpreter into its arrays.

`passes/memory.py` numbers the body's kernels as positions of their own (a loop
spans its body's positions), so body temporaries share arena slots with each
other by liveness within one step; whatever the loop reads from before it or
leaves for after it lives over the whole loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Carry:
    state: int                 # read by the body; holds the final carry after the loop
    next: int                  # written by the body; copied into state after each step
    init: Optional[int] = None # copied into state before step 0 (None: state is already set)


@dataclass(frozen=True)
class StepSlice:
    stacked: int               # a buffer [length, ...]
    step: int                  # a buffer of kind "step": stacked[time] during a step


@dataclass
class ScanLoop:
    name: str
    length: Any                # int or Dim; 0 runs no step
    body: list                 # kernels, in launch order, run at every step
    carries: tuple = ()
    slices: tuple = ()
    reverse: bool = False
    source: str = ""
    notes: dict = field(default_factory=dict)   # what the loop passes did (hoisted, fused), for dumps

    def own_buffers(self, at_end: bool = False) -> set:
        """The buffers the loop itself touches (carry copies, step slices), not its body;
        at_end: those it touches after its steps, where the inits are no longer read."""
        own = {c.state for c in self.carries} | {c.next for c in self.carries} | {s.stacked for s in self.slices}
        return own if at_end else own | {c.init for c in self.carries if c.init is not None}

    def reads(self) -> set:
        r = {c.state for c in self.carries} | {c.next for c in self.carries}
        r |= {c.init for c in self.carries if c.init is not None}
        r |= {s.stacked for s in self.slices}
        for k in self.body:
            r |= k.reads()
        return r

    def writes(self) -> set:
        """Everything the loop writes: body buffers, carries, and the stacked buffer of
        every step buffer written (the step buffer too)."""
        w = {c.state for c in self.carries} | {c.next for c in self.carries}
        for k in self.body:
            w |= k.writes()
        steps = {s.step: s.stacked for s in self.slices}
        return w | {steps[b] for b in w if b in steps}

    def describe(self, bufname, program=None) -> list:
        """Lines for fn.dump("kernels"): the loop's head and its buffers per step
        (passes/program.py's format_kernel prints the body after them). Given the
        Program, a carry shows the copies the backends skip (`same_memory`)."""
        order = "reverse " if self.reverse else ""
        lines = [f"{order}loop over {self.length} steps" + (f"  # {self.source}" if self.source else "")]
        lines += ["  " + _carry_text(c, bufname, program) for c in self.carries]
        for s in self.slices:
            lines.append(f"  step {bufname(s.step)} = {bufname(s.stacked)}[t]")
        for key, val in self.notes.items():
            lines.append(f"  {key}: {val}")
        return lines


def _carry_text(c: Carry, bufname, program) -> str:
    """'carry @s (from @init) <- @next after each step', saying where the plan made two
    of them one memory and the backends copy nothing (copies_before_loop, copies_after_step)."""
    shared = (lambda a, b: program is not None and same_memory(program, a, b))   # noqa: E731
    init = "" if c.init is None else f" (from {bufname(c.init)}" + (", one memory, no copy)" if shared(c.state, c.init) else ")")
    after = f": {bufname(c.next)} over {bufname(c.state)}, no copy" if shared(c.state, c.next) else " after each step"
    return f"carry {bufname(c.state)}{init} <- {bufname(c.next)}{after}"


def whole_temps(program, *bufs) -> bool:
    """Are bufs temps that own their memory, of one dtype and shape (what may share one
    arena slot from its start)?"""
    bs = [program.buffers[b] for b in bufs]
    return all(b.kind == "temp" and b.view_of is None for b in bs) \
        and len({(b.dtype, tuple(b.shape)) for b in bs}) == 1


def same_memory(program, a: int, b: int) -> bool:
    """Are buffers a and b one memory at every call: the same buffer, or two whole temps
    the memory plan put in one arena slot (both start at the slot's start)?"""
    return a == b or (whole_temps(program, a, b) and program.plan.get(a) is not None
                      and program.plan.get(a) == program.plan.get(b))


def copies_before_loop(program, loop: ScanLoop) -> list:
    """(state, init) of each carry whose init must be copied into its state before step
    0: those with an init the memory plan did not make the state's own memory
    (passes/memory_carries.py)."""
    return [(c.state, c.init) for c in loop.carries if c.init is not None and not same_memory(program, c.state, c.init)]


def copies_after_step(program, loop: ScanLoop) -> list:
    """(state, next) of each carry whose new value must be copied into its state after a
    step: those whose next the memory plan did not write over the state."""
    return [(c.state, c.next) for c in loop.carries if not same_memory(program, c.state, c.next)]


def all_loops(schedule):
    """Every ScanLoop of `schedule`, nested ones included."""
    for k in schedule:
        if isinstance(k, ScanLoop):
            yield k
            yield from all_loops(k.body)


def loop_stats(schedule, is_library_call) -> list:
    """fn.stats()["loops"]: per loop (nested ones too), its length, direction, the
    kernels and library calls (is_library_call(kernel)) of one step, and what runs
    before it instead of per step."""
    rows = []
    for k in all_loops(schedule):
        rows.append({"loop": k.name, "source": k.source, "length": str(k.length), "reverse": k.reverse,
                     "kernels_per_step": len(k.body),
                     "library_calls_per_step": sum(map(is_library_call, k.body)),
                     "body": [b.name for b in k.body], **k.notes})
    return rows
