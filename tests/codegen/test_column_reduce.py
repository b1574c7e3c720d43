"""Column reductions (out[c] = reduce_n x[n, c]) are emitted with the columns
innermost (codegen/llvm/column_reduce.py): same values as NumPy for every tile
remainder, empty and single rows, sum/max/min, a later per-column stage, and stores
in the reduce stage; the plain form is kept where the reduced axis is contiguous."""
import re

import numpy as np
import pytest

from codegen.llvm.column_reduce import TILE, is_column_reduction
from progbuild import Dim, LoopKernel, ProgBuilder, Stage, Store

N = Dim("N")


def _column_stats(C, dtype, store_twice=False):
    """out[c] = (sum_n x[n,c], max_n, min_n); upd[c] = p[c] - 0.5 * sum (a later stage);
    optionally y[n, c] = 2 x[n, c] stored from the reduce stage."""
    pb = ProgBuilder()
    x = pb.buf("x", dtype, (N, C), "input")
    p = pb.buf("p", dtype, (C,), "param")
    out = pb.buf("out", dtype, (3, C), "output")
    upd = pb.update(p)
    y = pb.buf("y", dtype, (N, C), "output") if store_twice else None
    b = pb.body()
    c, n = b.idx(0), b.idx(1)
    v = b.load(x, n, c)
    stores = []
    if store_twice:
        two = b("const", dtype=dtype, value=2)
        stores = [Store(y, (n, c), b("mul", v, two, dtype=dtype))]
    e = pb.body()
    ci = e.idx(0)
    r = [e("result", dtype=dtype, stage=0, slot=j) for j in range(3)]
    rows = [e("const", dtype="int64", value=j) for j in range(3)]
    half = e("const", dtype=dtype, value=0.5)
    new = e("sub", e.load(p, ci), e("mul", r[0], half, dtype=dtype), dtype=dtype)
    st0 = Stage((N,), b.ins, (("sum", v), ("max", v), ("min", v)), stores)
    st1 = Stage((), e.ins, (), [Store(out, (rows[j], ci), r[j]) for j in range(3)] + [Store(upd, (ci,), new)])
    pb.kernel(LoopKernel("colstats", (C,), [st0, st1]))
    return pb


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("C", [1, 7, TILE, TILE + 3, 3 * TILE])
@pytest.mark.parametrize("rows", [0, 1, 33])
def test_column_stats_match_numpy(dtype, C, rows):
    pb = _column_stats(C, dtype, store_twice=True)
    assert is_column_reduction(pb.program(), (C,), pb.schedule[0].stages)
    assert "tile_sum" in pb.build()[1]["llvm"]()
    rng = np.random.default_rng(C * 100 + rows)
    x = (rng.standard_normal((rows, C)) * 10).astype(dtype)
    p = rng.standard_normal(C).astype(dtype)
    (out, y), (new,) = pb.run([x], [p], {"N": rows})
    if rows == 0:
        np.testing.assert_array_equal(out[0], 0)
        assert y.shape == (0, C)
    else:
        want = np.stack([x.sum(0, dtype=dtype), x.max(0), x.min(0)])
        np.testing.assert_allclose(out, want, rtol=1e-6 if dtype == "float32" else 1e-12)
        np.testing.assert_array_equal(y, x * 2)
    np.testing.assert_allclose(new, p - out[0] * np.asarray(0.5, dtype), rtol=1e-6)


def test_reductions_along_the_contiguous_axis_keep_the_plain_form():
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N, 5), "input")
    out = pb.buf("out", "float32", (N,), "output")
    b = pb.body()
    v = b.load(x, b.idx(0), b.idx(1))
    e = pb.body()
    r = e("result", stage=0, slot=0)
    k = LoopKernel("rows", (N,), [Stage((5,), b.ins, (("sum", v),)), Stage((), e.ins, (), [Store(out, (e.idx(0),), r)])])
    assert not is_column_reduction(pb.program(), k.outer, k.stages)


def _blocks_of(llvm_text: str, function: str) -> list:
    """Block labels of `function` in optimised IR text."""
    head = re.search(rf"^define .*@k\d+_(k\d+_)?{function}\(.*$", llvm_text, re.M)
    body = llvm_text[head.end():].split("\n}\n", 1)[0]
    return [line.split(":")[0] for line in body.splitlines() if line and not line[0].isspace()
            and ":" in line and not line.startswith(";")]


def _row_sums(C):
    """out[c] = sum_n x[c, n]: the plain form, a blocked float sum inside the column loop."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (C, N), "input")
    out = pb.buf("out", "float32", (C,), "output")
    b = pb.body()
    v = b.load(x, b.idx(0), b.idx(1))
    e = pb.body()
    r = e("result", stage=0, slot=0)
    pb.kernel(LoopKernel("rowsum", (C,), [Stage((N,), b.ins, (("sum", v),)),
                                          Stage((), e.ins, (), [Store(out, (e.idx(0),), r)])]))
    return pb


def _bias_step(C):
    """p[c] - 0.5 * sum_n x[n, c]: an SGD step of a bias, the column-reduction form."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N, C), "input")
    p = pb.buf("p", "float32", (C,), "param")
    upd = pb.update(p)
    b = pb.body()
    v = b.load(x, b.idx(1), b.idx(0))
    e = pb.body()
    ci = e.idx(0)
    half = e("const", value=0.5)
    new = e("sub", e.load(p, ci), e("mul", e("result", stage=0, slot=0), half))
    pb.kernel(LoopKernel("biasstep", (C,), [Stage((N,), b.ins, (("sum", v),)),
                                            Stage((), e.ins, (), [Store(upd, (ci,), new)])]))
    return pb


@pytest.mark.parametrize("make, name, outer", [(lambda: _bias_step(300), "biasstep", "tile"),
                                               (lambda: _row_sums(5), "rowsum", "o0")])
def test_blocked_sums_are_not_unswitched(make, name, outer):
    """The block loop of a float sum always runs (an empty range is one empty block),
    so LLVM finds no loop-invariant test to hoist out of the loops around it and does
    not copy them (non-trivial unswitching; the copy's blocks are named <block>.us):
    that copy cost each bias gradient of an MLP step a third of its LLVM time."""
    pb = make()
    _, stages = pb.build()
    blocks = _blocks_of(stages["llvm"](), name)
    assert f"{outer}_body" in blocks, blocks
    assert not [blk for blk in blocks if blk.startswith(f"{outer}_body.us")], blocks


@pytest.mark.parametrize("C", [1, 7, TILE + 3])
@pytest.mark.parametrize("rows", [0, 1, 255, 256, 257, 1000])
def test_bias_step_matches_numpy_for_every_block_count(C, rows):
    pb = _bias_step(C)
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, C)).astype(np.float32)
    p = rng.standard_normal(C).astype(np.float32)
    _, (new,) = pb.run([x], [p], {"N": rows})
    np.testing.assert_allclose(new, p - 0.5 * x.sum(0, dtype=np.float64), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [0, 1, 255, 256, 257, 4096 * 2 + 5])
def test_row_sums_match_numpy_for_every_block_count(rows):
    pb = _row_sums(3)
    x = np.random.default_rng(rows).standard_normal((3, rows)).astype(np.float32)
    (out,), _ = pb.run([x], [], {"N": rows})
    np.testing.assert_allclose(out, x.sum(1, dtype=np.float64), rtol=1e-5, atol=1e-5)


T = Dim("T")


def _sum_over_leading(C, lead_axes_used=(0, 1)):
    """out[c] = sum_{t,n} x[t, n, c] (a bias gradient over [T, N]); the load's index
    is (idx lead_axes_used[0], idx lead_axes_used[1], c)."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (T, N, C), "input")
    out = pb.buf("out", "float32", (C,), "output")
    b = pb.body()
    c, ix = b.idx(0), {1: b.idx(1), 2: b.idx(2)}
    v = b.load(x, ix[1 + lead_axes_used[0]], ix[1 + lead_axes_used[1]], c)
    e = pb.body()
    r = e("result", stage=0, slot=0)
    pb.kernel(LoopKernel("colsum2", (C,), [Stage((T, N), b.ins, (("sum", v),)),
                                           Stage((), e.ins, (), [Store(out, (e.idx(0),), r)])]))
    return pb


@pytest.mark.parametrize("C", [5, TILE + 3])
@pytest.mark.parametrize("t,n", [(0, 3), (1, 1), (3, 7), (50, 32)])
def test_column_sums_over_two_symbolic_leading_axes_take_the_column_path(C, t, n):
    pb = _sum_over_leading(C)
    assert is_column_reduction(pb.program(), (C,), pb.schedule[0].stages)
    assert "tile_sum" in pb.build()[1]["llvm"]()
    x = np.random.default_rng(t * 31 + n).standard_normal((t, n, C)).astype(np.float32)
    (out,), _ = pb.run([x], [], {"T": t, "N": n})
    # float32 rounding of a sum: a few eps of the sum of magnitudes
    bound = 4 * np.finfo(np.float32).eps * np.abs(x).sum((0, 1)) + 1e-30
    np.testing.assert_array_less(np.abs(out - x.astype(np.float64).sum((0, 1))), bound)


def test_leading_axes_out_of_order_keep_the_plain_form_and_its_values():
    """x[n, t, c] read with the loop axes (T, N) swapped is not one flat row axis."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N, T, 9), "input")
    out = pb.buf("out", "float32", (9,), "output")
    b = pb.body()
    c, t, n = b.idx(0), b.idx(1), b.idx(2)
    v = b.load(x, n, t, c)
    e = pb.body()
    r = e("result", stage=0, slot=0)
    pb.kernel(LoopKernel("colsum_swapped", (9,), [Stage((T, N), b.ins, (("sum", v),)),
                                                  Stage((), e.ins, (), [Store(out, (e.idx(0),), r)])]))
    assert not is_column_reduction(pb.program(), (9,), pb.schedule[0].stages)
    xv = np.random.default_rng(3).standard_normal((4, 6, 9)).astype(np.float32)
    (o,), _ = pb.run([xv], [], {"T": 6, "N": 4})
    np.testing.assert_allclose(o, xv.sum((0, 1)), rtol=1e-5, atol=1e-5)
