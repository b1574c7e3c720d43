"""A copy of the call's inputs made again for its readers after a loop, instead of kept
alive across the loop.

A kernel that reads only inputs, parameters and constants and writes one temp (the
LSTM layer's time-first copy of its batch-first x) computes the same values whenever
it runs. When that temp is read before a loop and again after it (the input
projection before the forward loop; the kernel's gradient Xᵀ·dZ after the backward
one), keeping it costs its bytes across the loops, where their stacked per-step
values are alive too: at the peak of the call. `copy_again` gives the late readers a
copy of their own, made right before them, and moves that copy and those readers to
the end of the schedule, where stacked values they do not read are dead, so the
memory plan (passes/memory.py) can put the new copy over one of them. Moving those
readers lengthens the lives of their other operands, so the call's schedule keeps the
copies only when its memory plan's peak drops (`lowers_peak`, passes/lower/assemble.py);
loop bodies are left as they are (their memory is planned with the call's).

It applies only when every late reader is a kernel (not a loop) that writes nothing
but parameter updates, which no kernel reads, and when no kernel after it writes what
it reads: then the move changes no value. The price is the copy run twice.
"""
from __future__ import annotations

from nngraph.types import Dim

from .loop import ScanLoop
from .memory import peak_bytes
from .program import LoopKernel, swapped_kernel


# The sizes (every symbolic size bound to each) at which a second copy must plan no
# more memory, and less at one: the plan is made once for every binding, so a copy
# kept must not cost memory at small sizes or large ones.
PROBE_SIZES = (1, 16, 256, 4096)


def copy_again(schedule: list, buffers: dict, root, add_copy) -> list:
    """`schedule` with, for every copy of inputs that idles across a loop between its
    readers, a second copy for the readers after the loop, both moved to the end (module
    docstring). root(b): the buffer whose memory b is; add_copy(b): a new temp like b
    that stores the same graph value (its id), or None when it cannot make one."""
    schedule = list(schedule)
    copies = [(k, old) for k in schedule for old in [_input_copy(k, buffers, root)] if old is not None]
    for k, old in copies:
        late = _late_readers(schedule, schedule.index(k), old, buffers, root)
        again = add_copy(old) if late else None
        if again is not None:
            schedule = [x for x in schedule if not any(x is r for r in late)]
            schedule += [_retarget(k, old, again)] + [_retarget(r, old, again) for r in late]
    return schedule


def lowers_peak(new, old) -> bool:
    """Does Program `new` (with the second copies) plan less memory than `old`: a peak
    no higher at any of PROBE_SIZES and lower at one? (Moving the late readers to the
    end lengthens the lives of their other operands, which can raise it.)"""
    names = {s.name for p in (new, old) for b in p.buffers.values() for s in b.shape if isinstance(s, Dim)}
    peaks = [(peak_bytes(new, dict.fromkeys(names, n)), peak_bytes(old, dict.fromkeys(names, n)))
             for n in PROBE_SIZES]
    return all(a <= b for a, b in peaks) and any(a < b for a, b in peaks)


def _input_copy(k, buffers: dict, root):
    """The temp k writes when k is a loop kernel that reads only inputs, parameters and
    constants, writes that one temp whole and adds nothing in place; else None."""
    if not isinstance(k, LoopKernel) or len(k.writes()) != 1:
        return None
    (out,) = k.writes()
    if out != root(out) or buffers[out].kind != "temp":
        return None
    if any(st.accumulate for s in k.stages for st in s.stores):
        return None
    if any(buffers[root(b)].kind not in ("input", "param", "const") for b in k.reads()):
        return None
    return out


def _reads_root(k, b, root) -> bool:
    return any(root(x) == b for x in k.reads())


def _late_readers(schedule: list, at: int, copy: int, buffers: dict, root) -> list:
    """The readers of `copy` after the first loop (after its first reader) that does not
    read it, when there are such readers, all of them may move to the end and all read
    `copy` itself (_retarget swaps that buffer, not a view of it); else []."""
    readers = [i for i in range(at + 1, len(schedule)) if _reads_root(schedule[i], copy, root)]
    if not readers:
        return []
    loops = [i for i in range(readers[0] + 1, len(schedule))
             if isinstance(schedule[i], ScanLoop) and not _reads_root(schedule[i], copy, root)]
    late = [i for i in readers if loops and i > loops[0]]
    if not late or not all(_movable(schedule, i, buffers, root) for i in late):
        return []
    if any(root(b) == copy != b for i in late for b in schedule[i].reads()):
        return []           # read through a view: the moved reader would still read the first copy
    return [schedule[i] for i in late]


def _movable(schedule: list, i: int, buffers: dict, root) -> bool:
    """May kernel i run at the end instead? Not a loop; it writes only parameter updates,
    which no other kernel reads; no later kernel writes what it reads."""
    k = schedule[i]
    if isinstance(k, ScanLoop):
        return False
    writes = {root(b) for b in k.writes()}
    if any(buffers[b].kind != "update" for b in writes):
        return False
    if any(writes & {root(b) for b in x.reads()} for j, x in enumerate(schedule) if j != i):
        return False
    reads = {root(b) for b in k.reads()}
    return not any(reads & {root(b) for b in x.writes()} for x in schedule[i + 1:])


def _retarget(k, old: int, new: int):
    """A copy of kernel k that reads and writes buffer `new` where k used `old`."""
    return swapped_kernel(k, lambda b: new if b == old else b)
