"""The end of a lowering: store the reduction results other kernels read, then
assemble the Program (kernels built by the rules, sibling fusion, schedule, unused
buffers dropped, memory plan, stats)."""
from __future__ import annotations

import time


from .. import fusion, kernel_map
from ..collective import AllReduceKernel, collective_stats
from ..kernel_dag import kernel_dag
from ..loop import ScanLoop, loop_stats
from ..loop_accumulate import accumulate_into_steps
from ..loop_order import updates_before_loops
from ..memory import note_in_place, plan_memory
from ..one_hot_gather import gather_one_hot_sums
from ..program import LoopKernel, MatmulKernel, Program, Stage
from ..remat import copy_again, lowers_peak
from ..sibling_fusion import fuse_siblings


def finish_results(ctx):
    """Store each reduction result that another kernel reads, or that is returned."""
    read_elsewhere = set()
    for g in ctx.groups:
        read_elsewhere |= g.reads - g.writes
    for g in ctx.groups:
        need = [r for r in g.members if id(r) in g.results
                and any(b in read_elsewhere or ctx.returns(b) for b in ctx.store_bufs.get(id(r), []))]
        if not need:
            continue
        last = g.stages[-1]
        stage = last if last.kind == "map" and last.inner == () else g.new_stage((), "map")
        body = stage.body
        for r in need:
            s, slot, kept_out = g.results[id(r)]
            v = body.emit("result", (), r.dtype, stage=s, slot=slot)
            idx = [body.iconst(0)] * r.ndim
            for q, k in enumerate(kept_out):
                idx[k] = body.idx(q)
            for b in ctx.store_bufs[id(r)]:
                stage.stores.append(ctx.store(body, b, idx, v))
        for r in g.members:
            if id(r) in g.results and r not in need:
                g.writes -= set(ctx.store_bufs.get(id(r), []))


def _kernels(ctx) -> dict:
    kernels = {}
    for g in ctx.groups:
        if g.kernel is not None:
            kernels[g.no] = g.kernel
            continue
        names = "+".join(sorted({m.op for m in g.members}))
        stages = [Stage(s.inner, s.body.instrs, tuple(s.reduce), s.stores).compact() for s in g.stages]
        kernels[g.no] = LoopKernel(f"k{g.no}_{names}"[:60], g.outer, stages,
                                   ", ".join(fusion.label(m) for m in g.members))
    if ctx.opt >= 1:
        kernels = fuse_siblings(kernels, ctx.root)
        gather_one_hot_sums(kernels.values())
    return kernels


def ordered_kernels(ctx) -> list:
    """The context's kernels (sibling fusion done) in a launch order, named by position
    (a loop body's; the call's own schedule is assemble's, which may also remat)."""
    return _named(_launch_order(ctx))


def _launch_order(ctx) -> list:
    kernels = _kernels(ctx)
    dag = kernel_dag(kernels, ctx.root)
    bucket = _feeds_bucket(dag, kernels)
    order = dag.lexicographical_topological_sort(key=lambda no: _priority(kernels[no], no, bucket))
    return [kernels[no] for no in order]


def _named(schedule: list) -> list:
    for n, k in enumerate(schedule):
        k.name = f"k{n}_" + k.name.split("_", 1)[1]
    return schedule


def _second_buffer(ctx, b: int, made: list):
    """A new temp storing the same graph value as temp b (passes/remat.py), or None;
    (node, new buffer) appended to `made`, so that it can be taken back."""
    node = next((n for n in ctx.plan.order if b in ctx.store_bufs.get(id(n), ())), None)
    if node is None:
        return None
    again = ctx.add_buffer(f"{ctx.buffers[b].name}_again", node.type, "temp", node)
    ctx.store_bufs[id(node)].append(again)
    made.append((node, again))
    return again


def _remat_or_not(ctx, schedule: list) -> list:
    """`schedule` with passes/remat.py's second copies when they lower the memory plan's
    peak (moving their readers to the end lengthens those readers' other operands'
    lives, which can raise it); else `schedule`, the new buffers taken back."""
    made = []
    again = copy_again(schedule, ctx.buffers, ctx.root, lambda b: _second_buffer(ctx, b, made))
    if not made:
        return schedule
    if lowers_peak(_program(ctx, again), _program(ctx, schedule)):
        return again
    for node, b in made:
        ctx.store_bufs[id(node)].remove(b)
        del ctx.buffers[b]
    return schedule


def _program(ctx, schedule: list) -> Program:
    """The Program of `schedule` (buffers nobody touches dropped), its memory planned."""
    used = set(ctx.inputs) | set(ctx.params) | set(ctx.outputs) | {b for pair in ctx.updates for b in pair}
    for k in schedule:
        used |= k.reads() | k.writes()
    for b in list(used):
        while ctx.buffers[b].view_of is not None:     # a view keeps every buffer it relabels
            b = ctx.buffers[b].view_of
            used.add(b)
    buffers = {b: buf for b, buf in ctx.buffers.items() if b in used}
    prog = Program(buffers, schedule, list(ctx.inputs), list(ctx.params), list(ctx.outputs),
                   list(ctx.updates))
    prog.plan = plan_memory(prog)
    return prog


def assemble(ctx) -> Program:
    schedule = _launch_order(ctx)
    t0 = time.perf_counter()
    if ctx.opt >= 1:
        schedule = updates_before_loops(_remat_or_not(ctx, schedule), ctx.buffers, ctx.root)
        accumulate_into_steps(schedule, ctx.buffers, ctx.root)
    prog = _program(ctx, _named(schedule))
    note_in_place(prog)
    plan_seconds = time.perf_counter() - t0
    prog.nodes = kernel_map.build(ctx.plan, ctx.store_bufs, schedule, ctx.root, ctx.body_maps)
    prog.stats = _stats(ctx, schedule)
    prog.stats["memory_plan_seconds"] = plan_seconds   # for fn.stats()["compile_time"]
    if any(n.op == "all_reduce" for n in ctx.plan.order):
        prog.stats["all_reduce"] = collective_stats(prog.schedule, prog.buffers)
    if any(isinstance(k, ScanLoop) for k in schedule):
        prog.stats["loops"] = loop_stats(schedule, lambda k: isinstance(k, MatmulKernel))
    return prog


def _feeds_bucket(dag, kernels) -> dict:
    """kernel number -> the first all-reduce bucket (in build order) whose start needs it."""
    starts = sorted(no for no, k in kernels.items() if isinstance(k, AllReduceKernel) and k.step == "start")
    first = {}
    for i, s in enumerate(starts):
        for no in dag.ancestors(s) | {s}:
            first.setdefault(no, i)
    return first


def _priority(kern, no, bucket) -> tuple:
    """Sort key among the kernels ready to run: the work the first all-reduce bucket
    needs, then the second's..., then the rest, each in the order it was built in;
    an all-reduce's start as soon as it can run, its wait (which nothing before the
    results' readers needs) after the work built before it. So a bucket's reduction
    is in flight while the kernels of later buckets run (the backward pass of earlier
    layers); without buckets this is the build order."""
    start = isinstance(kern, AllReduceKernel) and kern.step == "start"
    return (bucket.get(no, float("inf")), 0 if start else 1, no)


def _stats(ctx, schedule) -> dict:
    reasons = {fusion.label(n): why for n in ctx.plan.order if (why := ctx.plan.reasons.get(id(n)))}
    return {
        "kernels": len(schedule),
        "library_calls": sum(isinstance(k, MatmulKernel) for k in schedule),
        "loop_kernels": sum(isinstance(k, LoopKernel) for k in schedule),
        "fusion": {
            "opt_level": ctx.opt,
            "materialised": reasons,
            "kernels": [{"name": k.name, "computes": k.source,
                         "stages": len(k.stages) if isinstance(k, LoopKernel) else 0,
                         "epilogue": bool(getattr(k, "epilogue", None))} for k in schedule],
        },
    }
