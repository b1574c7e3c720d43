"""Stacked buffers of one loop that may share memory although both live over it.

A scan's per-step input X (a stacked buffer the loop reads slice t of at step t)
and a per-step result Y (a stacked buffer it writes slice t of) are both alive over
the whole loop, so by lifetimes alone they need two slots. But when X is read by
nothing after the loop and Y written by nothing before it, slice t of X is dead
once step t has read it, before step t writes slice t of Y, then they can be one
buffer: each step writes its result over the input it consumed.

- an LSTM's forward step adds its recurrent product into its slice of the input
  projection [T, N, 4H] (passes/loop_accumulate.py: X may be written by the step
  too, before Y's slice is) and then stores its gates [T, N, 4H] from it, element by
  element (in the pointwise kernel after it): the gates go over the projection;
- its backward step reads the stored gates and writes the gates' gradient dz in
  one kernel (passes/lower/concatenate.py), element by element: dz goes over the
  gates.

The body must reach X and Y only through their step buffers: a body that also
reads X whole (closed over), another slice of it (a gather of X[t - 1], a second
per-step input on a view of X) would read slices earlier steps have overwritten.

`in_place_pairs(program)` gives the pairs {X, Y} (root buffer ids) for which this
holds; the memory plan (passes/memory.py) lets such a pair share a slot. Within a
step, Y's slice is first written either by a kernel after the last one that reads
(or writes) X's slice, or by that same kernel when it is *pointwise in place*: one map stage
whose loads of X and stores to Y index the buffer by loop indices plus constants
that keep different points' elements apart, every store to Y at an index storing a
value computed from X's load at that index. Each element of X is then read by one
point, before that point writes it, whatever order the points run in (threads,
vector lanes, Triton blocks); the LLVM backend's no-alias scopes (distinct roots)
stay sound since a load and the store to its address are ordered by the data.
"""
from __future__ import annotations

from .loop import ScanLoop, all_loops
from .program import LoopKernel, pointer_buffer


def in_place_pairs(program, live: dict, spans: dict) -> set:
    """{frozenset((X, Y))} of stacked buffers that may share memory (module docstring).
    live: temp -> (first, last) position (passes/memory.lifetimes); spans: id(loop)
    -> (start, end) positions of each ScanLoop."""
    return {frozenset((x, y)) for _, x, y in written_over(program, live, spans)}


def written_over(program, live: dict, spans: dict) -> list:
    """(loop, X, Y) for each stacked Y that may be written over stacked X (module
    docstring). X may be written by the step too (passes/loop_accumulate.py adds a
    product into it) as long as that is done before Y's slice is first written."""
    pairs = []
    for loop in all_loops(program.schedule):
        start, end = spans[id(loop)]
        written = set().union(*[k.writes() for k in loop.body]) if loop.body else set()
        stacked = [s.stacked for s in loop.slices]
        once = [s for s in loop.slices if stacked.count(s.stacked) == 1]   # one step view of each
        for sx in once:
            for sy in once:
                x, y = sx.stacked, sy.stacked
                if x == y or sy.step not in written or x not in live or y not in live \
                        or not _same_layout(program, x, y) or live[x][1] > end or live[y][0] < start:
                    continue
                if not all(reached_only_through(program.buffers, program.root, loop, s) for s in (sx, sy)):
                    continue
                if _step_writes_after_reads(program, loop, sx.step, sy.step):
                    pairs.append((loop, x, y))
    return pairs


def reached_only_through(buffers: dict, root, loop: ScanLoop, sl) -> bool:
    """Does the loop reach the memory of `sl.stacked` only through the step buffer
    `sl.step`? A body that also reads X whole (closed over: a product or a gather of
    X[t - 1]), or a second per-step input on a view of X, reads slices that earlier
    steps have overwritten once Y shares X's memory."""
    used = {c.state for c in loop.carries} | {c.next for c in loop.carries}
    used |= {c.init for c in loop.carries if c.init is not None}
    used |= {s.stacked for s in loop.slices if s.step != sl.step} | {s.step for s in loop.slices if s.step != sl.step}
    for k in loop.body:
        used |= k.reads() | k.writes() | (k.touches() if hasattr(k, "touches") else set())
    mine = root(sl.stacked)
    return all(root(b) != mine or pointer_buffer(buffers, b) == sl.step for b in used)


def _same_layout(program, x: int, y: int) -> bool:
    bx, by = program.buffers[x], program.buffers[y]
    return bx.dtype == by.dtype and tuple(bx.shape) == tuple(by.shape)


def _touches(program, kern, step: int) -> tuple:
    """(reads, writes) of `kern` through step buffer `step` (or views of it)."""
    reads = {b for b in kern.reads() if pointer_buffer(program.buffers, b) == step}
    writes = {b for b in kern.writes() if pointer_buffer(program.buffers, b) == step}
    return reads, writes


def _step_writes_after_reads(program, loop: ScanLoop, x_step: int, y_step: int) -> bool:
    """Within one step, is every read (and write) of X's slice done before Y's slice is
    written?"""
    x_at, y_at = [], []
    for n, k in enumerate(loop.body):
        if isinstance(k, ScanLoop) and {x_step, y_step} & (k.reads() | k.writes()):
            return False
        rx, wx = _touches(program, k, x_step)
        ry, wy = _touches(program, k, y_step)
        if rx or wx:
            x_at.append(n)
        if wy or ry:
            y_at.append(n)
    if not x_at or not y_at:
        return bool(y_at)
    if max(x_at) < min(y_at):
        return True
    k = loop.body[max(x_at)]
    return max(x_at) == min(y_at) and isinstance(k, LoopKernel) and pointwise_in_place(k, x_step, y_step)


def _axis_offset(body, i):
    """(loop axis, constant) when instruction i is idx(axis) or idx(axis) + constant."""
    ins = body[i]
    if ins.op == "idx":
        return ins.attr("axis"), 0
    if ins.op == "add" and len(ins.args) == 2:
        a, b = (body[j] for j in ins.args)
        if a.op == "idx" and b.op == "const":
            return a.attr("axis"), int(b.attr("value"))
        if b.op == "idx" and a.op == "const":
            return b.attr("axis"), int(a.attr("value"))
    return None


def _cone(body, root: int) -> set:
    seen, stack = set(), [root]
    while stack:
        i = stack.pop()
        if i not in seen:
            seen.add(i)
            stack.extend(body[i].args)
    return seen


def pointwise_in_place(kern: LoopKernel, x: int, y: int) -> bool:
    """May `kern` write buffer y over buffer x (module docstring)?"""
    if len(kern.stages) != 1 or kern.stages[0].inner or kern.stages[0].reduce:
        return False
    st = kern.stages[0]
    body = st.body
    loads = {i: ins.args for i, ins in enumerate(body) if ins.op == "load" and ins.attr("buffer") == x}
    if any(ins.op == "load" and ins.attr("buffer") == y for ins in body) or any(s.buffer == x for s in st.stores):
        return False
    if any(body[i].attr("masked") for i in loads):
        return False
    stores = [s for s in st.stores if s.buffer == y]
    if not _disjoint_points(body, kern.outer, list(loads.values()) + [s.index for s in stores]):
        return False
    at: dict = {}
    for i, args in loads.items():
        at.setdefault(_element(body, args), set()).add(i)
    for s in stores:
        if s.accumulate or not at.get(_element(body, s.index), set()) <= _cone(body, s.value):
            return False
    return True


def _element(body, index) -> tuple:
    """An index as ((loop axis, constant), ...): equal for loads and stores of one element."""
    return tuple(_axis_offset(body, i) for i in index)


def _disjoint_points(body, outer, indices: list) -> bool:
    """Do these indices (tuples of instruction ids, one per buffer axis) reach each
    element from one loop point only? Each buffer axis reads one loop axis (its own)
    plus constants at least that axis's extent apart."""
    axes, offsets = {}, {}
    for index in indices:
        for d, i in enumerate(index):
            ao = _axis_offset(body, i)
            if ao is None or axes.setdefault(d, ao[0]) != ao[0]:
                return False
            offsets.setdefault(d, set()).add(ao[1])
    if len(set(axes.values())) != len(axes) or len(axes) != len(outer):
        return False
    for d, offs in offsets.items():
        extent = outer[axes[d]]
        if len(offs) > 1 and not isinstance(extent, int):
            return False
        ordered = sorted(offs)
        if any(b - a < extent for a, b in zip(ordered, ordered[1:])):
            return False
    return True
