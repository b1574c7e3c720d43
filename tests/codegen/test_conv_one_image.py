"""A convolution of one image in one group (passes/lower/conv_layout.OneImage): its
product is [Og, OH, OW] with no unit batch or group axes, and the backend runs its
epilogue (bias, residual add, relu) part by part right after each thread's part of
the product (codegen/llvm/conv_gemm.py), in chunks of columns that fit the L2 cache.
Values and gradients against target="reference" and finite differences; the dumps
show the product's shape and the fused parts."""
import dataclasses
import re

import numpy as np
import pytest

import nngraph as ng
from passes.program import MatmulKernel


@pytest.fixture(autouse=True)
def channel_major(monkeypatch):
    """The product channel-major, [Og, OH*OW], in every test here but the pixel-major
    one: a forced layout keeps it (the pixel-major product is chosen by measurement,
    runtime/conv_choice.py)."""
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "batch")


@pytest.fixture
def three_threads(monkeypatch):
    """Small kernels split too, across three threads."""
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "THREAD_WORK", 1 << 8)
    monkeypatch.setattr(entry, "GEMM_COLUMN_WORK", 1 << 8)
    monkeypatch.setattr(entry, "N_THREADS", 3)


def _block(rng, batch, groups=1, dtype=np.float32):
    """relu(conv(x) + b + r): a residual block's last convolution, 3x3 stride 2."""
    w = ng.parameter(rng.standard_normal((16, 8 // groups, 3, 3)).astype(dtype), name="w")
    b = ng.parameter(rng.standard_normal((1, 16, 1, 1)).astype(dtype), name="b")
    x = ng.placeholder((batch, 8, 13, 12), name="x", dtype=np.dtype(dtype).name)
    r = ng.placeholder((batch, 16, 7, 6), name="r", dtype=np.dtype(dtype).name)
    y = ng.relu(ng.conv2d(x, w, stride=2, padding=1, groups=groups) + b + r)
    xv = rng.standard_normal((batch, 8, 13, 12)).astype(dtype)
    rv = rng.standard_normal((batch, 16, 7, 6)).astype(dtype)
    return (x, r), y, (xv, rv), (w, b)


@pytest.mark.usefixtures("three_threads")
@pytest.mark.parametrize("batch,groups", [(1, 1), (1, 2), (2, 1)])
def test_values_match_the_reference(batch, groups):
    rng = np.random.default_rng(0)
    ins, y, vals, _ = _block(rng, batch, groups)
    got = ng.compile(list(ins), y, target="cpu")(*vals)
    np.testing.assert_allclose(got, ng.compile(list(ins), y, target="reference")(*vals), rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("three_threads")
def test_one_image_product_has_no_unit_axes_and_its_epilogue_is_fused(monkeypatch):
    """The kernels dump: the product is [16, 7*6] (a batch of two in the whole-batch
    layout: [1, 16, 2*7*6]); the LLVM dump: the 42 columns are split across threads,
    each part a product + epilogue function (a batch of two: a separate epilogue).
    A forced layout does not apply to one image."""
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "batch")
    rng = np.random.default_rng(1)
    for batch, shape in ((1, "[16,7*6]"), (2, "[1,16,2*7*6]")):
        ins, y, _, _ = _block(rng, batch)
        fn = ng.compile(list(ins), y, target="cpu")
        (kern,) = [k for k in fn.runner.program.schedule if isinstance(k, MatmulKernel)]
        assert kern.epilogue_domain()[0] == (16 if batch == 1 else 1)
        assert re.search(r"matmul @\w+" + re.escape(shape) + " = ", fn.dump("kernels")), fn.dump("kernels")
        llvm = fn.dump("llvm")
        fused = re.search(r"@nngraph_parallel\([^)]*conv2d_fused_cols, i64 42\)", llvm)
        assert (fused is not None) == (batch == 1)
        assert ("conv2d_epi(" in llvm) == (batch == 2)


def _small_l2(monkeypatch, l2):
    """The fused column parts chunked as on a host with an L2 of `l2` bytes (named in
    an NNGRAPH_ variable, which the compile cache's key holds: not a program compiled
    with the host's L2 in an earlier test)."""
    import codegen.llvm.conv_gemm as conv_gemm
    monkeypatch.setenv("NNGRAPH_TEST_L2", str(l2))
    facts = dataclasses.replace(conv_gemm.host_facts(), l2=l2)
    monkeypatch.setattr(conv_gemm, "host_facts", lambda: facts)


def _split_block(monkeypatch, threads, l2, out_channels, size, seed):
    """relu(conv3x3 stride 2 (x) + b + r) of one image, compiled for the cpu with
    `threads` threads that split small kernels too (and an L2 of `l2` bytes): (fn,
    its value, the reference's)."""
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "THREAD_WORK", 1 << 8)
    monkeypatch.setattr(entry, "GEMM_COLUMN_WORK", 1 << 8)
    monkeypatch.setattr(entry, "N_THREADS", threads)
    if l2:
        _small_l2(monkeypatch, l2)
    rng = np.random.default_rng(seed)
    w = ng.parameter(rng.standard_normal((out_channels, 8, 3, 3)).astype(np.float32), name="w")
    b = ng.parameter(rng.standard_normal((1, out_channels, 1, 1)).astype(np.float32), name="b")
    x = ng.placeholder((1, 8, 2 * size, 2 * size), name="x")
    r = ng.placeholder((1, out_channels, size, size), name="r")
    y = ng.relu(ng.conv2d(x, w, stride=2, padding=1) + b + r)
    vals = (rng.standard_normal((1, 8, 2 * size, 2 * size)).astype(np.float32),
            rng.standard_normal((1, out_channels, size, size)).astype(np.float32))
    fn = ng.compile([x, r], y, target="cpu")
    return fn, fn(*vals), ng.compile([x, r], y, target="reference")(*vals)


def _fused_calls(fn) -> list:
    return [ln for ln in fn.dump("llvm").splitlines() if " call " in ln and "conv2d_fused" in ln]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("l2", [None, 16 * 64 * 4 * 2])
@pytest.mark.parametrize("out_channels,size", [(16, 13), (64, 5)])
def test_fused_parts_match_the_reference(out_channels, size, l2, threads, monkeypatch):
    """Columns longer than rows (16 x 49: column parts, in chunks of 64 columns with a
    small L2) and rows longer than columns (64 x 9: row parts), one thread or three."""
    fn, got, want = _split_block(monkeypatch, threads, l2, out_channels, size, 5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    part, other = ("fused_cols", "fused_rows") if out_channels < size * size else ("fused_rows", "fused_cols")
    calls = _fused_calls(fn)
    assert any(part in ln for ln in calls) and not any(other in ln for ln in calls), calls


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("l2", [None, 7 * 16 * 4 * 2])
@pytest.mark.parametrize("out_channels,size", [(16, 7), (64, 3)])
def test_pixel_major_products_match_the_reference(out_channels, size, l2, threads, monkeypatch):
    """The product [OH*OW, Og] (conv_layout "one_image_t"), its epilogue (bias, residual
    add, relu) writing NCHW y: more points than channels (49 x 16: row parts), more
    channels than points (9 x 64: column parts, in chunks of 16 channels with a small
    L2), one thread or three; as the reference computes."""
    import runtime.conv_choice as conv_choice
    monkeypatch.delenv("NNGRAPH_CONV_LAYOUT")
    monkeypatch.setattr(conv_choice, "measured_layout", lambda geo, dtype, products=None: "one_image_t")
    fn, got, want = _split_block(monkeypatch, threads, l2, out_channels, size, 7)
    assert f"@t_conv[{size * size},{out_channels}]" in fn.dump("kernels")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    part = "fused_cols" if size * size < out_channels else "fused_rows"
    assert any(part in ln for ln in _fused_calls(fn)), _fused_calls(fn)


def test_chunks_of_columns_fit_half_the_l2(monkeypatch):
    from codegen.llvm.conv_gemm import chunk_columns
    _small_l2(monkeypatch, 2 << 20)
    assert chunk_columns(256, 4) == 1024             # 256 rows x 1024 columns x 4 bytes = 1 MiB
    assert chunk_columns(64, 4) * 64 * 4 <= 1 << 20
    assert chunk_columns(1 << 20, 4) == 16           # never below a cache line of columns


@pytest.mark.usefixtures("three_threads")
def test_gradients_match_the_reference():
    """conv2d_grad_input and conv2d_grad_filter in the one-image layout (gy read as
    [Og, OH, OW], cols as [K, OH, OW]): the gradients of x and w as the reference's."""
    rng = np.random.default_rng(2)
    (x, r), y, (xv, rv), (w, b) = _block(rng, 1)
    loss = ng.sum(y * y)
    gx, gw, gb = ng.grad(loss, [x, w, b])
    cpu = ng.compile([x, r], [gx, gw, gb], target="cpu")(xv, rv)
    ref = ng.compile([x, r], [gx, gw, gb], target="reference")(xv, rv)
    for got, want in zip(cpu, ref):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


@pytest.mark.usefixtures("three_threads")
def test_gradients_by_finite_differences_in_float64():
    rng = np.random.default_rng(3)
    (x, r), y, (xv, rv), (w, b) = _block(rng, 1, dtype=np.float64)
    loss = ng.sum(y * ng.constant(rng.standard_normal((1, 16, 7, 6))))
    (gx,) = ng.compile([x, r], ng.grad(loss, [x]), target="cpu")(xv, rv)
    f = ng.compile([x, r], loss, target="cpu")
    eps = 1e-6
    for flat in rng.choice(xv.size, 12, replace=False):
        d = np.zeros(xv.size)
        d[flat] = eps
        d = d.reshape(xv.shape)
        numeric = (f(xv + d, rv) - f(xv - d, rv)) / (2 * eps)
        np.testing.assert_allclose(gx.reshape(-1)[flat], numeric, rtol=1e-5, atol=1e-7)


def test_the_epilogue_runs_rows_of_the_whole_image():
    """The epilogue's `acc` becomes a load of the product (passes/coalesce.acc_as_load),
    so its [16, 7, 6] domain coalesces into 16 rows of 42 (was: 112 rows of 6); a
    product buffer of another shape than the domain is left alone."""
    from passes.coalesce import acc_as_load, coalesce
    rng = np.random.default_rng(4)
    ins, y, vals, _ = _block(rng, 1)
    fn = ng.compile(list(ins), y, target="cpu")
    program = fn.runner.program
    (kern,) = [k for k in program.schedule if isinstance(k, MatmulKernel)]
    outer = kern.epilogue_domain()
    assert outer == (16, 7, 6)
    stages = acc_as_load(program, outer, [kern.epilogue], kern.out)
    assert not any(i.op == "acc" for i in stages[0].body)
    assert coalesce(program, outer, stages)[0] == (16, 42)
    assert acc_as_load(program, (16, 42), [kern.epilogue], kern.out) is None


@pytest.mark.parametrize("groups", [1, 2])
def test_every_target_agrees_at_batch_one(target, groups):
    """The one-image layout is the lowering's, so every backend runs it (the Triton
    one on its interpreter here): the block's value and gradients against NumPy
    (the node-by-node oracle, helpers.compile)."""
    import helpers
    rng = np.random.default_rng(6)
    w = ng.parameter(rng.standard_normal((8, 4 // groups, 3, 3)).astype(np.float32), name="w")
    b = ng.parameter(rng.standard_normal((1, 8, 1, 1)).astype(np.float32), name="b")
    x = ng.placeholder((1, 4, 9, 8), name="x")
    r = ng.placeholder((1, 8, 5, 4), name="r")
    y = ng.relu(ng.conv2d(x, w, stride=2, padding=1, groups=groups) + b + r)
    outs = [y] + list(ng.grad(ng.sum(y * y), [x, w, b]))
    vals = (rng.standard_normal((1, 4, 9, 8)).astype(np.float32), rng.standard_normal((1, 8, 5, 4)).astype(np.float32))
    got = helpers.compile([x, r], outs, target=target)(*vals)
    want = helpers.compile([x, r], outs, target="oracle")(*vals)
    for g, w_ in zip(got, want):
        g = g.cpu().numpy() if hasattr(g, "cpu") else np.asarray(g)
        np.testing.assert_allclose(g, w_, rtol=1e-3, atol=1e-3)

