"""A convolution of one image in one group (passes/lower/conv_layout.OneImage): its
product is [Og, OH, OW] with no unit batch or group axes, so the epilogue (bias,
residual add, relu) is a loop over the output channels that the backend splits
across threads (with the unit axes first it ran on one thread). Values and
gradients against target="reference" and finite differences; the dumps show the
product's shape and the split epilogue."""
import re

import numpy as np
import pytest

import nngraph as ng
from passes.program import MatmulKernel


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
def test_one_image_product_has_no_unit_axes_and_its_epilogue_is_split(monkeypatch):
    """The kernels dump: the product is [16, 7*6] (a batch of two in the whole-batch
    layout: [1, 16, 2*7*6]); the LLVM dump: the epilogue runs through nngraph_parallel
    over the 16 channels. A forced layout does not apply to one image."""
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "batch")
    rng = np.random.default_rng(1)
    for batch, shape in ((1, "[16,7*6]"), (2, "[1,16,2*7*6]")):
        ins, y, _, _ = _block(rng, batch)
        fn = ng.compile(list(ins), y, target="cpu")
        (kern,) = [k for k in fn.runner.program.schedule if isinstance(k, MatmulKernel)]
        assert kern.epilogue_domain()[0] == (16 if batch == 1 else 1)
        assert re.search(r"matmul @\w+" + re.escape(shape) + " = ", fn.dump("kernels")), fn.dump("kernels")
        split = re.search(r"@nngraph_parallel\([^)]*conv2d_epi, i64 16\)", fn.dump("llvm"))
        assert (split is not None) == (batch == 1)


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
