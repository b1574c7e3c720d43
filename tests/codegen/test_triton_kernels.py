"""codegen/triton on hand-built Programs: the generated source compiles (under Triton's
interpreter without a GPU) and computes what NumPy computes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from gpu_skip import require_gpu_target

require_gpu_target()

from progbuild import Dim, LoopKernel, MatmulKernel, ProgBuilder, Stage, Store  # noqa: E402

from nngraph.ops.random import uniform_bits  # noqa: E402
from runtime.gpu import build_program  # noqa: E402

N = Dim("N")
RNG = np.random.default_rng(7)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def run(pb, inputs, params=(), env=None, **module_overrides):
    """Build and run; module_overrides set the generated module's block-size limits
    for this call (to force several loop steps and programs on small data)."""
    runner, stages = build_program(pb.program())
    old = {k: getattr(runner.module, k) for k in module_overrides}
    for k, v in module_overrides.items():
        setattr(runner.module, k, v)
    try:
        outs, new = runner.run(list(inputs), list(params), env or {})
    finally:
        for k, v in old.items():
            setattr(runner.module, k, v)
    return outs, new, stages["triton"]


def chain_program():
    """out = tanh(x + bias) * 2 over [N, 5], bias broadcast along N."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N, 5), "input")
    bias = pb.buf("bias", "float32", (5,), "param")
    out = pb.buf("out", "float32", (N, 5), "output")
    b = pb.body()
    i0, i1 = b.idx(0), b.idx(1)
    s = b("add", b.load(x, i0, i1), b.load(bias, i1))
    r = b("mul", b("tanh", s), b("const", value=2.0))
    pb.kernel(LoopKernel("chain", (N, 5), [Stage((), b.ins, (), [Store(out, (i0, i1), r)])]))
    return pb


def test_fused_elementwise_chain_is_one_masked_block_kernel_for_any_n():
    pb = chain_program()
    bias = randn(5)
    for n in (7, 1, 300):
        x = randn(n, 5)
        (out,), _, src = run(pb, [x], [bias], {"N": n})
        np.testing.assert_allclose(out, np.tanh(x + bias) * 2, rtol=2e-5, atol=1e-6)
    assert src.count("\ndef k") == 1 and "do_not_specialize=['N']" in src
    assert "mask=xmask" in src and "x_ptr + xoffs" in src and "bias_ptr + x1" in src


def softmax_program(inner=5):
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N, inner), "input")
    sm = pb.buf("sm", "float32", (N, inner), "output")
    b0 = pb.body()
    l0 = b0.load(x, b0.idx(0), b0.idx(1))
    b1 = pb.body()
    l1 = b1.load(x, b1.idx(0), b1.idx(1))
    e1 = b1("exp", b1("sub", l1, b1("result", stage=0, slot=0)))
    b2 = pb.body()
    q0, q1 = b2.idx(0), b2.idx(1)
    l2 = b2.load(x, q0, q1)
    e2 = b2("div", b2("exp", b2("sub", l2, b2("result", stage=0, slot=0))), b2("result", stage=1, slot=0))
    pb.kernel(LoopKernel("softmax", (N,), [
        Stage((inner,), b0.ins, (("max", l0),), []),
        Stage((inner,), b1.ins, (("sum", e1),), []),
        Stage((inner,), b2.ins, (), [Store(sm, (q0, q1), e2)])]))
    return pb


def np_softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_softmax_is_one_row_kernel_with_one_pass_per_stage():
    x = randn(9, 5) * 30
    (sm,), _, src = run(softmax_program(), [x], env={"N": 9})
    np.testing.assert_allclose(sm, np_softmax(x), rtol=2e-5, atol=1e-7)
    assert src.count("for rstart in range(") == 3


def test_long_rows_loop_over_blocks_of_the_row():
    # rows of 37 in blocks of 4 (10 loop steps per stage), 2 rows per program
    x = randn(5, 37) * 10
    (sm,), _, _ = run(softmax_program(37), [x], env={"N": 5}, RBLOCK_MAX=4, TILE=8)
    np.testing.assert_allclose(sm, np_softmax(x), rtol=2e-5, atol=1e-7)


def test_extreme_logits_stay_finite():
    x = np.array([[1e30, -1e30, 0, 5, 88]], np.float32)
    (sm,), _, _ = run(softmax_program(), [x], env={"N": 1})
    assert np.all(np.isfinite(sm))
    np.testing.assert_allclose(sm, np_softmax(x.astype(np.float64)), atol=1e-7)


def dense_program():
    """h = relu(x @ Wᵀ + bias) (W holds Wᵀ: trans_b) and its mask h > 0 from the epilogue."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N, 20), "input")
    W = pb.buf("W", "float32", (30, 20), "param")
    bias = pb.buf("bias", "float32", (30,), "param")
    h = pb.buf("h", "float32", (N, 30), "output")
    m = pb.buf("m", "bool", (N, 30), "output")
    e = pb.body()
    i, j = e.idx(0), e.idx(1)
    z = e("add", e("acc"), e.load(bias, j))
    r = e("relu", z)
    pos = e("greater", z, e("const", value=0.0))
    pb.kernel(MatmulKernel("dense", x, W, h, (), N, 30, 20, trans_b=True,
                           epilogue=Stage((), e.ins, (), [Store(h, (i, j), r), Store(m, (i, j), pos)])))
    return pb


def test_matmul_with_fused_bias_relu_epilogue():
    W, bias = randn(30, 20), randn(30)
    for n in (7, 40):
        x = randn(n, 20)
        (h, m), _, src = run(dense_program(), [x], [W, bias], {"N": n})
        z = x @ W.T + bias
        np.testing.assert_allclose(h, np.maximum(z, 0), rtol=2e-5, atol=2e-5)
        np.testing.assert_array_equal(m, z > 0)
    assert "tl.dot(" in src and "# epilogue" in src


def test_batched_matmul_with_transposed_a_broadcast_batch_alpha_beta():
    pb = ProgBuilder()
    A = pb.buf("A", "float32", (2, 1, 9, 17), "input")     # holds Aᵀ
    B = pb.buf("B", "float32", (3, 9, 5), "input")
    C0 = pb.buf("C0", "float32", (2, 3, 17, 5), "input")
    C = pb.buf("C", "float32", (2, 3, 17, 5), "output")
    # C = C0 first (a copy kernel), then C = 0.5 * Aᵀ B + 2 * C
    b = pb.body()
    idx = [b.idx(k) for k in range(4)]
    pb.kernel(LoopKernel("copy", (2, 3, 17, 5), [Stage((), b.ins, (), [Store(C, tuple(idx), b.load(C0, *idx))])]))
    pb.kernel(MatmulKernel("bmm", A, B, C, (2, 3), 17, 5, 9, trans_a=True, alpha=0.5, beta=2.0))
    a, bm, c0 = randn(2, 1, 9, 17), randn(3, 9, 5), randn(2, 3, 17, 5)
    (c,), _, _ = run(pb, [a, bm, c0])
    np.testing.assert_allclose(c, 0.5 * np.matmul(np.swapaxes(a, -1, -2), bm) + 2 * c0, rtol=2e-5, atol=2e-5)


def test_integer_matmul_without_tensor_cores():
    pb = ProgBuilder()
    a = pb.buf("a", "int32", (5, 19), "input")
    b = pb.buf("b", "int32", (19, 3), "input")
    c = pb.buf("c", "int32", (5, 3), "output")
    pb.kernel(MatmulKernel("imm", a, b, c, (), 5, 3, 19))
    av, bv = RNG.integers(-50, 50, (5, 19)).astype(np.int32), RNG.integers(-50, 50, (19, 3)).astype(np.int32)
    (cv,), _, _ = run(pb, [av, bv])
    np.testing.assert_array_equal(cv, av @ bv)


def reduce_program(kind, dtype="float32", inner=6):
    pb = ProgBuilder()
    x = pb.buf("x", dtype, (N, inner), "input")
    out = pb.buf("out", "int64" if kind == "argmax" else dtype, (N,), "output")
    b0 = pb.body()
    i, j = b0.idx(0), b0.idx(1)
    v = b0.load(x, i, j)
    red = (kind, v, j) if kind == "argmax" else (kind, v)
    b1 = pb.body()
    o = b1.idx(0)
    r = b1("result", stage=0, slot=0, dtype="int64" if kind == "argmax" else dtype)
    pb.kernel(LoopKernel(kind, (N,), [Stage((inner,), b0.ins, (red,), []), Stage((), b1.ins, (), [Store(out, (o,), r)])]))
    return pb


@pytest.mark.parametrize("kind", ["sum", "max", "min", "argmax"])
def test_row_reductions_with_ties_and_nan(kind):
    x = RNG.integers(-3, 4, (8, 6)).astype(np.float32)   # many ties
    x[2, 3] = np.nan
    x[5, :] = -np.inf
    (out,), _, _ = run(reduce_program(kind), [x], env={"N": 8}, RBLOCK_MAX=4, TILE=8)
    ref = {"sum": np.sum, "max": np.max, "min": np.min, "argmax": np.argmax}[kind](x, axis=1)
    np.testing.assert_array_equal(out, ref)


def test_integer_sum_and_argmax_of_ints():
    x = RNG.integers(-1000, 1000, (4, 50)).astype(np.int32)
    (s,), _, _ = run(reduce_program("sum", "int32", 50), [x], env={"N": 4})
    np.testing.assert_array_equal(s, x.sum(1, dtype=np.int32))
    (a,), _, _ = run(reduce_program("argmax", "int32", 50), [x], env={"N": 4})
    np.testing.assert_array_equal(a, x.argmax(1))


def test_full_reduction_to_a_scalar_over_an_empty_outer_domain():
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N, 3), "input")
    out = pb.buf("out", "float32", (), "output")
    b0 = pb.body()
    v = b0.load(x, b0.idx(0), b0.idx(1))
    b1 = pb.body()
    mean = b1("div", b1("result", stage=0, slot=0), b1("cast", b1("size", dtype="int64", size=N), dtype="float32"))
    pb.kernel(LoopKernel("mean", (), [Stage((N, 3), b0.ins, (("sum", v),), []), Stage((), b1.ins, (), [Store(out, (), mean)])]))
    x = randn(11, 3)
    (m,), _, _ = run(pb, [x], env={"N": 11}, RBLOCK_MAX=8)
    np.testing.assert_allclose(m, x.sum() / 11, rtol=2e-5)


def test_masked_load_with_floor_index_arithmetic():
    """out[i] = x[(i - 3) // 2] if 0 <= i - 3 < 2n else -1, plus (i - 3) mod 4: negative operands floor."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N,), "input")
    out = pb.buf("out", "float32", (Dim("M"),), "output")
    mo = pb.buf("mo", "int64", (Dim("M"),), "output")
    b = pb.body()
    i = b.idx(0)
    j = b("sub", i, b("const", value=3, dtype="int64"), dtype="int64")
    q = b("floordiv", j, b("const", value=2, dtype="int64"), dtype="int64")
    ok = b("logical_and", b("greater_equal", j, b("const", value=0, dtype="int64"), dtype="bool"),
           b("less", q, b("size", dtype="int64", size=N), dtype="bool"), dtype="bool")
    v = b.load(x, q, mask=ok)
    val = b("where", ok, v, b("const", value=-1.0))
    r = b("mod", j, b("const", value=4, dtype="int64"), dtype="int64")
    pb.kernel(LoopKernel("pad", (Dim("M"),), [Stage((), b.ins, (), [Store(out, (i,), val), Store(mo, (i,), r)])]))
    xv = randn(4)
    (o, m), _, _ = run(pb, [xv], env={"N": 4, "M": 14})
    jj = np.arange(14) - 3
    qq = jj // 2
    ref = np.where((jj >= 0) & (qq < 4), xv[np.clip(qq, 0, 3)], -1.0)
    np.testing.assert_array_equal(o, ref.astype(np.float32))
    np.testing.assert_array_equal(m, jj % 4)


def test_uniform_is_bit_identical_to_the_reference_generator():
    pb = ProgBuilder()
    counter = pb.buf("rng_counter", "int64", (), "param")
    out = pb.buf("u", "float32", (N, 7), "output")
    b = pb.body()
    i, j = b.idx(0), b.idx(1)
    flat = b("add", b("mul", i, b("const", value=7, dtype="int64"), dtype="int64"), j, dtype="int64")
    u = b("uniform", b.load(counter), flat, seed=123456789)
    pb.kernel(LoopKernel("rand", (N, 7), [Stage((), b.ins, (), [Store(out, (i, j), u)])]))
    for c in (0, 5, 2**33 + 1):
        (uv,), _, _ = run(pb, [], [np.array(c, np.int64)], {"N": 300})
        bits = uniform_bits(123456789, c, np.arange(300 * 7))
        ref = ((bits >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)).reshape(300, 7)
        np.testing.assert_array_equal(uv, ref)


def test_generated_source_runs_as_a_standalone_script(tmp_path):
    _, _, src = run(dense_program(), [randn(3, 20)], [randn(30, 20), randn(30)], {"N": 3})
    path = tmp_path / "kernels.py"
    path.write_text(src)
    env = dict(os.environ)
    r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "h: [8, 30]" in r.stdout and "m: [8, 30]" in r.stdout


def test_matmul_whose_dimensions_span_several_axes():
    """A whole-batch conv's product: columns (N, 5, 6), the epilogue storing NCHW
    (its index splits rn into three axes); and a contraction over (N, 30)."""
    pb = ProgBuilder()
    w = pb.buf("w", "float32", (2, 3, 4), "input")
    cols = pb.buf("cols", "float32", (2, 4, N, 5, 6), "input")
    gy = pb.buf("gy", "float32", (2, 3, N, 30), "input")
    nchw = pb.buf("nchw", "float32", (N, 6, 5, 6), "output")
    dw = pb.buf("dw", "float32", (2, 3, 4), "output")
    t = pb.buf("t", "float32", (2, 3, N, 5, 6), "temp")
    e = pb.body()
    g, o, n, h, x = (e.idx(k) for k in range(5))
    c = e("add", e("mul", g, e("const", value=3, dtype="int64"), dtype="int64"), o, dtype="int64")
    epi = Stage((), e.ins, (), [Store(t, (g, o, n, h, x), e("acc")), Store(nchw, (n, c, h, x), e("relu", e("acc")))])
    pb.kernel(MatmulKernel("conv", w, cols, t, (2,), 3, (N, 5, 6), 4, epilogue=epi))
    flat = pb.buf("cols_flat", "float32", (2, 4, N, 30), "view")
    pb.buffers[flat].view_of = cols
    pb.kernel(MatmulKernel("dw", gy, flat, dw, (2,), 3, 4, (N, 30), trans_b=True))
    for size in (3, 1):
        a, b, c_ = randn(2, 3, 4), randn(2, 4, size, 5, 6), randn(2, 3, size, 30)
        (y, d), _, src = run(pb, [a, b, c_], env={"N": size})
        prod = np.matmul(a, b.reshape(2, 4, -1)).reshape(2, 3, size, 5, 6)
        np.testing.assert_allclose(y, np.maximum(prod, 0).transpose(2, 0, 1, 3, 4).reshape(size, 6, 5, 6),
                                   rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(d, np.matmul(c_.reshape(2, 3, -1), np.swapaxes(b.reshape(2, 4, -1), 1, 2)),
                                   rtol=2e-4, atol=2e-4)
    assert "rn0 = " in src
