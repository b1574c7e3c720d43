"""passes/split_reduce.py: which kernels may be cut into chunks (part + combine), decided
once, and how each backend picks its share of the plan (codegen/llvm/kernel.py
thread_split: a full sum/max/min reduction in stage 0; codegen/triton/loop_kernel.py
program_split: every stage with an inner domain chunked, no scatter-add)."""
from __future__ import annotations

from progbuild import Dim, LoopKernel, ProgBuilder, Stage, Store

from codegen.llvm.kernel import thread_split
from codegen.triton.loop_kernel import program_split
from passes.split_reduce import SplitAccumulator, split_plan

N, M = Dim("N"), Dim("M")


def reduce_then_store(kind, outer=(), accumulate=False):
    """out = kind(x) over x's last axis; argmax also keeps the index."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", outer + (N,), "input")
    out = pb.buf("out", "int64" if kind == "argmax" else "float32", outer, "output")
    b0 = pb.body()
    o = [b0.idx(a) for a in range(len(outer))]
    i = b0.idx(len(outer))
    v = b0.load(x, *o, i)
    b1 = pb.body()
    r = b1("result", stage=0, slot=0, dtype="int64" if kind == "argmax" else "float32")
    oi = tuple(b1.idx(a) for a in range(len(outer)))
    red = (kind, v, i) if kind == "argmax" else (kind, v)
    return LoopKernel(kind, outer, [Stage((N,), b0.ins, (red,), []),
                                    Stage((), b1.ins, (), [Store(out, oi, r, accumulate)])])


def softmax_like():
    """max over the row, then a sum that reads the max: the second stage needs the whole
    row first, so only the first is chunkable."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N,), "input")
    out = pb.buf("out", "float32", (), "output")
    b0 = pb.body()
    v0 = b0.load(x, b0.idx(0))
    b1 = pb.body()
    m = b1("result", stage=0, slot=0)
    e = b1("exp", b1("sub", b1.load(x, b1.idx(0)), m))
    b2 = pb.body()
    s = b2("result", stage=1, slot=0)
    return LoopKernel("sm", (), [Stage((N,), b0.ins, (("max", v0),), []), Stage((N,), b1.ins, (("sum", e),), []),
                                 Stage((), b2.ins, (), [Store(out, (), s)])])


def test_full_sum_plan_names_stage_slot_and_combine_rule():
    k = reduce_then_store("sum")
    plan = split_plan(k)
    assert plan.chunked == 1
    assert plan.accumulators == (SplitAccumulator(0, 0, "sum", "float32", "sum"),)
    assert plan.finishing(k) == [k.stages[1]]
    assert thread_split(k) == plan
    assert program_split(k) == plan


def test_argmax_splits_on_triton_only():
    k = reduce_then_store("argmax")
    plan = split_plan(k)
    assert [a.combine for a in plan.accumulators] == ["argmax"]
    assert program_split(k) == plan
    assert thread_split(k) is None       # the CPU partial holds one value, not the index


def test_llvm_splits_only_kernels_without_outer_domain():
    k = reduce_then_store("max", outer=(M,))
    assert split_plan(k) is not None and program_split(k) is not None
    assert thread_split(k) is None


def test_stage_reading_a_result_ends_the_chunked_prefix():
    k = softmax_like()
    plan = split_plan(k)
    assert plan.chunked == 1 and [a.stage for a in plan.accumulators] == [0]
    assert thread_split(k) == plan         # stage 0 per thread, stages 1.. in the finish function
    assert program_split(k) is None        # the combine launch has no inner loop for stage 1


def test_scatter_add_keeps_triton_from_splitting():
    k = reduce_then_store("sum", accumulate=True)
    assert split_plan(k) is not None
    assert program_split(k) is None


def test_map_only_stage_has_nothing_to_combine():
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N,), "input")
    y = pb.buf("y", "float32", (N,), "output")
    b0 = pb.body()
    i = b0.idx(0)
    k = LoopKernel("copy", (), [Stage((N,), b0.ins, (), [Store(y, (i,), b0.load(x, i))])])
    assert split_plan(k) is None and thread_split(k) is None and program_split(k) is None
