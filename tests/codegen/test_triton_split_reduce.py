"""codegen/triton: long reductions over few rows split across programs (partials, then a
combine launch), and stores inside reduce stages, on hand-built Programs compared with
NumPy and the Program interpreter. Block sizes and the split thresholds are forced small
through the generated module's constants, so Triton's interpreter stays quick."""
from __future__ import annotations

import numpy as np
import pytest

from gpu_skip import require_gpu_target

require_gpu_target()

from progbuild import Dim, LoopKernel, ProgBuilder, Stage, Store  # noqa: E402

import nngraph as ng  # noqa: E402
from passes.program_interpreter import run_program  # noqa: E402
from runtime.gpu import build_program  # noqa: E402

N, M = Dim("N"), Dim("M")
RNG = np.random.default_rng(5)
SPLIT = {"SPLIT_MIN_CHUNK": 8, "SPLIT_PROGRAMS": 16, "RBLOCK_MAX": 32, "TILE": 64}
NO_SPLIT = {"SPLIT_MIN_CHUNK": 10 ** 9}


class Spy:
    """Stands in for a generated kernel and counts the grids it is launched on."""

    def __init__(self, kernel):
        self.kernel, self.grids = kernel, []

    def __getitem__(self, grid):
        self.grids.append(grid)
        return self.kernel[grid]


def run(pb, inputs, env, overrides, spy=()):
    """Build and run with the module constants overridden; returns (outputs, source,
    {kernel name: grids it was launched on})."""
    runner, stages = build_program(pb.program())
    mod = runner.module
    old = {k: getattr(mod, k) for k in list(overrides) + list(spy)}
    spies = {name: Spy(getattr(mod, name)) for name in spy}
    for k, v in list(overrides.items()) + list(spies.items()):
        setattr(mod, k, v)
    try:
        outs, _ = runner.run(list(inputs), [], env)
    finally:
        for k, v in old.items():
            setattr(mod, k, v)
    return outs, stages["triton"], {k: s.grids for k, s in spies.items()}


def full_reduction(kind, dtype):
    """out = kind(x) over x: dtype[N], outer domain () (argmax: an int64 index)."""
    pb = ProgBuilder()
    x = pb.buf("x", dtype, (N,), "input")
    out = pb.buf("out", "int64" if kind == "argmax" else dtype, (), "output")
    b0 = pb.body()
    i = b0.idx(0)
    v = b0.load(x, i)
    red = (kind, v, i) if kind == "argmax" else (kind, v)
    b1 = pb.body()
    r = b1("result", stage=0, slot=0, dtype="int64" if kind == "argmax" else dtype)
    pb.kernel(LoopKernel(kind, (), [Stage((N,), b0.ins, (red,), []), Stage((), b1.ins, (), [Store(out, (), r)])]))
    return pb


def data(n, dtype):
    if dtype == "int32":
        return RNG.integers(-1000, 1000, n).astype(np.int32)
    return RNG.standard_normal(n).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_full_sum_splits_long_inputs_and_matches_numpy(dtype):
    pb = full_reduction("sum", dtype)
    for n in (0, 1, 7, 1000, 5000):
        x = data(n, dtype)
        (out,), src, grids = run(pb, [x], {"N": n}, SPLIT, spy=("k0_sum", "k0_sum_part", "k0_sum_combine"))
        ref = x.sum(dtype=x.dtype)
        if dtype == "int32":
            assert out == ref
        else:
            np.testing.assert_allclose(out, ref, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)
        split = n >= 2 * SPLIT["SPLIT_MIN_CHUNK"]
        assert bool(grids["k0_sum_part"]) == split and bool(grids["k0_sum"]) == (not split)
        if split:
            parts = grids["k0_sum_part"][0][0]
            assert grids["k0_sum_part"] == [(parts, 1)] and 2 <= parts <= SPLIT["SPLIT_PROGRAMS"]
            assert len(grids["k0_sum_combine"]) == 1
    assert "def k0_sum_part(" in src and "def k0_sum_combine(" in src and "rfirst = tl.program_id(0) * CHUNK" in src


def test_the_gpu_rule_splits_only_rows_that_give_each_program_a_long_chunk():
    pb = full_reduction("sum", "float32")
    gpu_rule = {"SPLIT_PROGRAMS": 1024, "SPLIT_MIN_CHUNK": 4096}   # the module's defaults on a GPU
    for n, parts in ((3000, 0), (9000, 2)):
        x = data(n, "float32")
        (out,), _, grids = run(pb, [x], {"N": n}, gpu_rule, spy=("k0_sum", "k0_sum_part"))
        np.testing.assert_allclose(out, x.sum(), rtol=1e-5)
        assert grids == ({"k0_sum": [], "k0_sum_part": [(parts, 1)]} if parts else
                         {"k0_sum": [(1,)], "k0_sum_part": []})


def tricky(n, dtype):
    """Few distinct values (ties across chunks), an -inf run and, for floats, a NaN late."""
    x = RNG.integers(-3, 4, n).astype(dtype)
    if dtype != "int32" and n > 10:
        x[: n // 3] = -np.inf
        x[n - 5] = np.nan
    return x


@pytest.mark.parametrize("kind", ["max", "min", "argmax"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_split_max_min_argmax_with_ties_nan_and_ragged_sizes(kind, dtype):
    pb = full_reduction(kind, dtype)
    ref_fn = {"max": np.max, "min": np.min, "argmax": np.argmax}[kind]
    for n in (1, 7, 1000, 1003):
        for x in (tricky(n, dtype), data(n, dtype)):
            (out,), _, _ = run(pb, [x], {"N": n}, SPLIT)
            np.testing.assert_array_equal(out, ref_fn(x), err_msg=f"n={n}")


def test_argmax_of_all_equal_or_all_minus_inf_is_the_first_index():
    pb = full_reduction("argmax", "float32")
    for fill in (-np.inf, 2.0):
        x = np.full(500, fill, np.float32)
        for over in (SPLIT, NO_SPLIT):
            (out,), _, _ = run(pb, [x], {"N": 500}, dict(over, RBLOCK_MAX=32))
            assert out == 0


def row_program(kinds=("sum", "argmax")):
    """Per row i of x: f32[M, N]: each reduction of x[i, :], stored to its output [M]."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (M, N), "input")
    outs = [pb.buf(k, "int64" if k == "argmax" else "float32", (M,), "output") for k in kinds]
    b0 = pb.body()
    i, j = b0.idx(0), b0.idx(1)
    v = b0.load(x, i, j)
    reds = tuple((k, v, j) if k == "argmax" else (k, v) for k in kinds)
    b1 = pb.body()
    o = b1.idx(0)
    stores = [Store(out, (o,), b1("result", stage=0, slot=s, dtype="int64" if k == "argmax" else "float32"))
              for s, (k, out) in enumerate(zip(kinds, outs))]
    pb.kernel(LoopKernel("rows", (M,), [Stage((N,), b0.ins, reds, []), Stage((), b1.ins, (), stores)]))
    return pb


def test_few_long_rows_split_on_a_two_dimensional_grid_with_ragged_row_blocks():
    pb = row_program(("sum", "max", "argmax"))
    x = RNG.standard_normal((3, 700)).astype(np.float32)
    x[1, 650] = 9.0
    x[2, 10] = x[2, 600] = 9.0
    # TILE // RBLOCK = 2 rows per program: row blocks {0, 1}, {2 (+ a masked row)}
    (s, mx, am), _, grids = run(pb, [x], {"M": 3, "N": 700}, dict(SPLIT, SPLIT_PROGRAMS=8),
                                spy=("k0_rows_part", "k0_rows_combine"))
    np.testing.assert_allclose(s, x.sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(mx, x.max(1))
    np.testing.assert_array_equal(am, x.argmax(1))
    assert grids["k0_rows_part"] == [(4, 2)] and len(grids["k0_rows_combine"]) == 1


def test_a_stage_reading_an_earlier_result_keeps_one_program_per_row():
    from test_triton_kernels import softmax_program
    x = RNG.standard_normal((2, 300)).astype(np.float32)
    (sm,), src, _ = run(softmax_program(300), [x], {"N": 2}, SPLIT)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(sm, e / e.sum(1, keepdims=True), rtol=2e-5, atol=1e-7)
    assert "_part(" not in src and "_split(" not in src.split("def launch_k0_softmax")[1]


def fused_program():
    """One pass over x: f32[M, N] computes s[i] = sum_j exp(x[i, j]) and stores
    y[i, j] = 2 x[i, j] + 1 and the mask x[i, j] > 0 from the reduce stage itself."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (M, N), "input")
    y = pb.buf("y", "float32", (M, N), "output")
    pos = pb.buf("pos", "bool", (M, N), "output")
    s = pb.buf("s", "float32", (M,), "output")
    b0 = pb.body()
    i, j = b0.idx(0), b0.idx(1)
    v = b0.load(x, i, j)
    e = b0("exp", v)
    g = b0("add", b0("mul", v, b0("const", value=2.0)), b0("const", value=1.0))
    p = b0("greater", v, b0("const", value=0.0), dtype="bool")
    b1 = pb.body()
    o = b1.idx(0)
    pb.kernel(LoopKernel("fused", (M,), [
        Stage((N,), b0.ins, (("sum", e),), [Store(y, (i, j), g), Store(pos, (i, j), p)]),
        Stage((), b1.ins, (), [Store(s, (o,), b1("result", stage=0, slot=0))])]))
    return pb


@pytest.mark.parametrize("over", [NO_SPLIT, SPLIT], ids=["one-program", "split"])
@pytest.mark.parametrize("m,n", [(3, 37), (1, 500), (2, 0)])
def test_reduce_stage_stores_at_every_inner_point(over, m, n):
    pb = fused_program()
    x = RNG.standard_normal((m, n)).astype(np.float32)
    (y, pos, s), src, _ = run(pb, [x], {"M": m, "N": n}, dict(over, RBLOCK_MAX=8, TILE=16))
    np.testing.assert_allclose(y, 2 * x + 1, rtol=1e-6)
    np.testing.assert_array_equal(pos, x > 0)
    np.testing.assert_allclose(s, np.exp(x).sum(1), rtol=1e-5)
    (ry, rpos, rs), _ = run_program(pb.program(), [x], [], {"M": m, "N": n})
    np.testing.assert_array_equal(ry, y)
    np.testing.assert_array_equal(rpos, pos)
    np.testing.assert_allclose(rs, s, rtol=1e-5)
    part = src.split("def k0_fused_part(")[1].split("\ndef ")[0]
    assert "tl.store(y_ptr + xoffs * rnumel0 + roffs, s0v7, mask=rmask & xmask)" in part


def test_dump_shows_both_split_kernels_and_a_compiled_sum_is_right():
    x = ng.placeholder(("N",), name="x")
    fn = ng.compile([x], [ng.sum(x), ng.max(x)], target="gpu")
    src = fn.dump("triton")
    assert src.count("_part(") == src.count("_combine(") >= 1        # the definitions
    assert src.count("_part[(nparts") == src.count("_combine[(") >= 1   # their launches
    assert "def _split(xnumel, XBLOCK, rnumel, RBLOCK):" in src
    compile(src, "<dump>", "exec")
    mod = fn.runner.module
    old = mod.SPLIT_MIN_CHUNK, mod.RBLOCK_MAX
    mod.SPLIT_MIN_CHUNK, mod.RBLOCK_MAX = 64, 64
    try:
        v = RNG.standard_normal(3001).astype(np.float32)
        total, top = fn(v)
    finally:
        mod.SPLIT_MIN_CHUNK, mod.RBLOCK_MAX = old
    np.testing.assert_allclose(total, v.sum(), rtol=1e-5)
    assert top == v.max()
