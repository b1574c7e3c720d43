"""A loop step's product added to a per-step input accumulates into that input's slice.

An LSTM's forward step computes z = x_t·W_ih (+ b) + h·W_hh: the input projection of
all steps is one product before the loop (passes/loop_hoist.py), and the step's
product h·W_hh has an epilogue that adds slice t of it, storing z into a buffer of
its own ([N, 4H]), which the pointwise kernel then reads to write the gates over
that same slice (passes/memory_inplace.py). When nothing reads the slice after the
product, the product can add itself into it instead: BLAS with beta = 1 (C = A·B + C)
writes z where the projection was, and the separate z buffer is gone: 4·N·H floats
less in one step's working set, at the peak of the training step.

`accumulate_into_steps(schedule, buffers, root)` rewrites, in every loop of the
call's schedule (not a loop nested in another: a per-step input there may be read
again at the outer loop's next step), each product K of the body whose epilogue
adds its product to a per-step input X at the product's own element
(`load X[i, j] + acc`), when

- X is the only thing the addition's operands are used for (the load and the
  product are read by that addition only, X loaded once);
- X's stacked buffer is a temp (never a caller's array) that the loop reaches only
  through X, which no other kernel of the body touches and no kernel after the loop
  reads;
- K's own result buffer Z is a whole temp of X's type that only K writes (at the
  product's own element, as K's out), read only by kernels after K in the step,
  and by nothing outside the body.

Then K computes X = A·B + X (its out X, beta = 1), its epilogue reads `acc` where
it read the sum (none is left when it only stored the sum), and the kernels after it
read X where they read Z. The sum is the same up to the BLAS's rounding order
(A·B + X inside the GEMM instead of after it).
"""
from __future__ import annotations

from .loop import ScanLoop
from .memory_inplace import reached_only_through
from .program import LoopKernel, MatmulKernel, Stage, instr, swapped_kernel, swapped_stage


def accumulate_into_steps(schedule: list, buffers: dict, root) -> None:
    """Rewrite the products of `schedule`'s loops in place (module docstring).
    root(b): the buffer whose memory b is."""
    for at, loop in enumerate(schedule):
        if not isinstance(loop, ScanLoop):
            continue
        after = set()
        for k in schedule[at + 1:]:
            after |= {root(b) for b in k.reads() | k.writes()}
        for n, k in enumerate(loop.body):
            found = _addend(k, buffers) if isinstance(k, MatmulKernel) else None
            if found is not None and _may_accumulate(loop, n, found, buffers, root, schedule, after):
                _rewrite(loop, n, found)


def _addend(k: MatmulKernel, buffers: dict):
    """(X, add instruction, acc instruction) when k's epilogue adds its product to a
    load of X at the product's own element, both used by that addition only; else None."""
    ep = k.epilogue
    if ep is None or k.beta or k.window is not None or ep.inner or ep.reduce:
        return None
    body, ndim = ep.body, len(k.epilogue_domain())
    uses = [0] * len(body)
    for ins in body:
        for a in ins.args:
            uses[a] += 1
    for s in ep.stores:
        for a in (*s.index, s.value):
            uses[a] += 1
    for i, ins in enumerate(body):
        if ins.op != "add" or len(ins.args) != 2:
            continue
        acc = [a for a in ins.args if body[a].op == "acc"]
        loads = [a for a in ins.args if body[a].op == "load"]
        if len(acc) != 1 or len(loads) != 1 or uses[acc[0]] != 1 or uses[loads[0]] != 1:
            continue
        load = body[loads[0]]
        x = load.attr("buffer")
        if load.attr("masked") or not _own_element(body, load.args, ndim) or \
                sum(b.op == "load" and b.attr("buffer") == x for b in body) != 1:
            continue
        if (buffers[x].dtype, tuple(buffers[x].shape)) == (buffers[k.out].dtype, tuple(buffers[k.out].shape)):
            return x, i, acc[0]
    return None


def _own_element(body, index, ndim: int) -> bool:
    """Is `index` (instruction ids) the loop point itself: idx 0, idx 1, ..., one per axis?"""
    return len(index) == ndim and all(body[a].op == "idx" and body[a].attr("axis") == d for d, a in enumerate(index))


def _may_accumulate(loop: ScanLoop, n: int, found, buffers: dict, root, schedule, after: set) -> bool:
    """The conditions of the module docstring on X, Z and the loop."""
    k, (x, _, _) = loop.body[n], found
    z = k.out
    slices = [s for s in loop.slices if s.step == x]
    if len(slices) != 1 or buffers[root(x)].kind != "temp" or root(x) in after:
        return False
    if not reached_only_through(buffers, root, loop, slices[0]):
        return False
    if buffers[z].kind != "temp" or buffers[z].view_of is not None or z in (k.a, k.b) or x in (k.a, k.b):
        return False
    if any(b.view_of in (x, z) for b in buffers.values()):
        return False
    if any(st.buffer == x for st in k.epilogue.stores):
        return False
    if any(st.buffer == z and (st.accumulate or not _own_element(k.epilogue.body, st.index, len(k.epilogue_domain())))
           for st in k.epilogue.stores):
        return False
    if z in loop.own_buffers() | {s.step for s in loop.slices}:
        return False
    for m, other in enumerate(loop.body):
        if m == n:
            continue
        if x in other.reads() | other.writes() or z in other.writes():
            return False
        if z in other.reads() and (m < n or not isinstance(other, (LoopKernel, MatmulKernel))):
            return False
    return not any(z in kern.reads() | kern.writes() for kern in _outside(schedule, loop))


def _outside(schedule, loop):
    """Every kernel of `schedule` (loop bodies included) but `loop`'s own body."""
    for k in schedule:
        if k is loop:
            continue
        yield k
        if isinstance(k, ScanLoop):
            yield from _outside(k.body, loop)


def _rewrite(loop: ScanLoop, n: int, found) -> None:
    """K = loop.body[n] accumulates into X; the kernels after it read X for Z."""
    k = loop.body[n]
    x, add_at, _ = found
    z = k.out
    swap = lambda b: x if b == z else b        # noqa: E731
    body = list(k.epilogue.body)
    body[add_at] = instr("acc", (), dtype=body[add_at].dtype)
    ep = swapped_stage(Stage(k.epilogue.inner, body, k.epilogue.reduce, k.epilogue.stores), swap).compact()
    only_sum = len(ep.stores) == 1 and ep.stores[0].buffer == x and ep.body[ep.stores[0].value].op == "acc"
    k.out, k.beta, k.epilogue = x, 1.0, None if only_sum else ep
    for kern in loop.body[n + 1:]:
        if z in kern.reads() | kern.writes():      # a nested loop never uses z (_may_accumulate)
            _swap_buffers(kern, swap)


def _swap_buffers(kern, swap) -> None:
    """Make kern read and write swap(b) where it used b, in place (the lowering's map
    from nodes to kernels holds these kernel objects)."""
    vars(kern).update(vars(swapped_kernel(kern, swap)))
