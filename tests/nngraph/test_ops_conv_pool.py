"""conv2d and pooling against NumPy loop definitions (and PyTorch where installed):
stride, padding forms, dilation, groups, symbolic batch, the transposition identities
of the gradient primitives, PyTorch's pooling semantics, and the shape errors."""
import numpy as np
import pytest

import nngraph as ng
from helpers import compile, rand, run
from nngraph.ops.conv import conv2d_grad_filter, conv2d_grad_input


def conv_loops(x, w, stride, pads, dilation, groups):
    """The definition, written as loops: y[n,o,p,q] = sum x_pad[n, g*Cg+c, p*s+i*d, q*s+j*d] w[o,c,i,j]."""
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    N, C, Hp, Wp = xp.shape
    O, Cg, KH, KW = w.shape
    OH, OW = (Hp - dh * (KH - 1) - 1) // sh + 1, (Wp - dw * (KW - 1) - 1) // sw + 1
    y = np.zeros((N, O, OH, OW))
    og = O // groups
    for o in range(O):
        g = o // og
        for p in range(OH):
            for q in range(OW):
                for i in range(KH):
                    for j in range(KW):
                        y[:, o, p, q] += xp[:, g * Cg:(g + 1) * Cg, p * sh + i * dh, q * sw + j * dw] @ w[o, :, i, j]
    return y


# (x shape, w shape, stride, padding as given, padding as pairs, dilation, groups)
CONV_CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 0, ((0, 0), (0, 0)), 1, 1),
    ((2, 3, 7, 6), (4, 3, 3, 3), 2, 1, ((1, 1), (1, 1)), 1, 1),
    ((1, 4, 8, 9), (6, 2, 3, 2), (2, 1), (1, 0), ((1, 1), (0, 0)), (1, 2), 2),
    ((3, 4, 6, 6), (4, 1, 3, 3), 1, "same", ((1, 1), (1, 1)), 1, 4),            # depthwise
    ((1, 2, 6, 7), (3, 2, 2, 2), 1, "same", ((0, 1), (0, 1)), 1, 1),            # even kernel: extra after
    ((1, 2, 7, 7), (3, 2, 3, 3), 2, "same", ((1, 1), (1, 1)), 1, 1),
    ((2, 2, 5, 5), (3, 2, 3, 3), 1, "valid", ((0, 0), (0, 0)), 2, 1),
    ((2, 3, 5, 4), (2, 3, 1, 1), 1, 0, ((0, 0), (0, 0)), 1, 1),                  # 1x1
    ((1, 1, 1, 1), (1, 1, 1, 1), 1, 0, ((0, 0), (0, 0)), 1, 1),                  # all size 1
    ((2, 2, 4, 5), (2, 2, 2, 3), 1, ((2, 0), (1, 3)), ((2, 0), (1, 3)), 1, 1),   # asymmetric pairs
    ((2, 1, 11, 10), (2, 1, 9, 9), 1, 1, ((1, 1), (1, 1)), 1, 1),               # 81 taps: col2im keeps a tap loop
    ((1, 3, 5, 4), (2, 3, 1, 1), 1, 0, ((0, 0), (0, 0)), 1, 1),                  # one example, 1x1: cols is x
    ((3, 4, 5, 5), (6, 2, 2, 2), 2, 1, ((1, 1), (1, 1)), 1, 2),                  # groups, stride, batch > 1
]


@pytest.fixture(params=["batch", "example", "taps"])
def conv_layout(request, monkeypatch):
    """Each conv test runs in each batched layout of passes/lower/conv_layout.py."""
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", request.param)
    return request.param


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv2d_matches_the_loop_definition(case, target, conv_layout):
    xs, ws, stride, padding, pads, dilation, groups = CONV_CASES[case]
    a, b = rand(xs, case), rand(ws, case + 100)
    x, w = ng.placeholder(xs, "float64"), ng.placeholder(ws, "float64")
    y = ng.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    st = (stride, stride) if isinstance(stride, int) else stride
    di = (dilation, dilation) if isinstance(dilation, int) else dilation
    want = conv_loops(a, b, st, pads, di, groups)
    assert y.shape == want.shape and y.attrs["padding"] == pads
    np.testing.assert_allclose(run(y, {x: a, w: b}, target), want, rtol=1e-12, atol=1e-12)


def test_conv2d_matches_pytorch():
    torch = pytest.importorskip("torch")
    for k, (xs, ws, stride, padding, pads, dilation, groups) in enumerate(CONV_CASES):
        if isinstance(padding, str) or isinstance(padding, tuple) and isinstance(padding[0], tuple):
            continue
        a, b = rand(xs, k), rand(ws, k + 100)
        x, w = ng.placeholder(xs, "float64"), ng.placeholder(ws, "float64")
        got = run(ng.conv2d(x, w, stride, padding, dilation, groups), {x: a, w: b}, "oracle")
        want = torch.nn.functional.conv2d(torch.tensor(a), torch.tensor(b), None, stride, padding, dilation, groups)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)


def test_conv2d_float32_with_a_symbolic_batch(target, conv_layout):
    x = ng.placeholder(("N", 3, 6, 6), "float32", name="x")
    w = ng.parameter(rand((5, 3, 3, 3), 1, "float32"), name="w")
    y = ng.relu(ng.conv2d(x, w, padding=1))
    assert str(y.shape[0]) == "N" and y.shape[1:] == (5, 6, 6) and y.dtype == "float32"
    fn = compile([x], y, target)
    for n in (1, 3):
        a = rand((n, 3, 6, 6), n, "float32")
        want = np.maximum(conv_loops(a.astype(np.float64), w.value.astype(np.float64), (1, 1), ((1, 1), (1, 1)), (1, 1), 1), 0)
        np.testing.assert_allclose(fn(a), want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_gradient_primitives_are_the_transposes_of_conv2d(case, target, conv_layout):
    """<grad_input(gy, w), h> = <gy, conv2d(h, w)> and <grad_filter(x, gy), v> = <gy, conv2d(x, v)>."""
    xs, ws, stride, padding, pads, dilation, groups = CONV_CASES[case]
    attrs = dict(stride=stride, padding=pads, dilation=dilation, groups=groups)
    a, b = rand(xs, 1), rand(ws, 2)
    x, w = ng.placeholder(xs, "float64"), ng.placeholder(ws, "float64")
    y = ng.conv2d(x, w, **attrs)
    gy = ng.placeholder(y.shape, "float64")
    c = rand(y.shape, 3)
    gi = conv2d_grad_input(gy, w, input_hw=xs[2:], **attrs)
    gf = conv2d_grad_filter(x, gy, kernel_hw=ws[2:], **attrs)
    assert gi.shape == xs and gf.shape == ws
    yv, giv, gfv = run([y, gi, gf], {x: a, w: b, gy: c}, target)
    h, v = rand(xs, 4), rand(ws, 5)
    conv_h, conv_v = run([y, y], {x: h, w: b, gy: c}, target)[0], run(y, {x: a, w: v}, target)
    np.testing.assert_allclose(np.sum(giv * h), np.sum(c * conv_h), rtol=1e-11)
    np.testing.assert_allclose(np.sum(gfv * v), np.sum(c * conv_v), rtol=1e-11)


def test_conv2d_errors_name_the_operands():
    x = ng.placeholder(("N", 3, 8, 8), name="x")
    with pytest.raises(ng.ShapeError, match=r"conv2d: input x: f32\[N,3,8,8\] has 3 channels.*w: f32\[4,2,3,3\].*3 input"):
        ng.conv2d(x, ng.placeholder((4, 2, 3, 3), name="w"))
    with pytest.raises(ng.ShapeError, match="groups=2 must divide"):
        ng.conv2d(x, ng.placeholder((4, 1, 3, 3), name="w"), groups=2)
    with pytest.raises(ng.ShapeError, match="static"):
        ng.conv2d(ng.placeholder((2, "C", 8, 8)), ng.placeholder((4, 3, 3, 3)))
    with pytest.raises(ng.ShapeError, match="larger than the padded input"):
        ng.conv2d(x, ng.placeholder((4, 3, 9, 9)))
    with pytest.raises(ng.ShapeError, match="4-d"):
        ng.conv2d(ng.placeholder((3, 8, 8)), ng.placeholder((4, 3, 3, 3)))
    with pytest.raises(ng.ShapeError, match="stride must be >= 1"):
        ng.conv2d(x, ng.placeholder((4, 3, 3, 3)), stride=0)
    with pytest.raises(ng.ShapeError, match="padding"):
        ng.conv2d(x, ng.placeholder((4, 3, 3, 3)), padding="full")


# ----------------------------------------------------------------------------- pooling


def pool_loops(x, k, s, p, kind, count_include_pad=True):
    """PyTorch's pooling, written as loops over windows of the padded input."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    N, C, H, W = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    real = np.pad(np.ones((H, W)), ((ph, ph), (pw, pw)))
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            win = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            if kind == "max":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                div = kh * kw if count_include_pad else real[i * sh:i * sh + kh, j * sw:j * sw + kw].sum()
                y[:, :, i, j] = win.sum(axis=(2, 3)) / div
    return y


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


POOL_CASES = [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 1)), (2, 1, 1), (1, 1, 0), ((2, 3), None, (0, 1)), (7, 1, 3)]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_pools_match_the_loop_definition(case, target):
    k, s, p = POOL_CASES[case]
    a = rand((2, 3, 7, 6), case)
    x = ng.placeholder((2, 3, 7, 6), "float64")
    outs = [ng.max_pool2d(x, k, s, p), ng.avg_pool2d(x, k, s, p), ng.avg_pool2d(x, k, s, p, count_include_pad=False)]
    st = _pair(k if s is None else s)
    want = [pool_loops(a, _pair(k), st, _pair(p), "max"), pool_loops(a, _pair(k), st, _pair(p), "avg"),
            pool_loops(a, _pair(k), st, _pair(p), "avg", False)]
    for o, got, w in zip(outs, run(outs, {x: a}, target), want):
        assert o.shape == w.shape
        np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-14)


def test_pools_and_their_gradients_match_pytorch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for k, s, p in POOL_CASES:
        a = rand((2, 3, 7, 6), 7)
        a[0, 0, :2, :2] = 1.25  # ties inside a window: the first maximum takes the gradient
        x = ng.placeholder(a.shape, "float64")
        for ours, theirs in [(lambda t: ng.max_pool2d(t, k, s, p), lambda t: F.max_pool2d(t, k, s, p)),
                             (lambda t: ng.avg_pool2d(t, k, s, p), lambda t: F.avg_pool2d(t, k, s, p)),
                             (lambda t: ng.avg_pool2d(t, k, s, p, count_include_pad=False),
                              lambda t: F.avg_pool2d(t, k, s, p, count_include_pad=False))]:
            y = ours(x)
            c = rand(y.shape, 8)
            yv, gv = run([y, ng.grad(ng.sum(y * c), x)], {x: a}, "oracle")
            tx = torch.tensor(a, requires_grad=True)
            ty = theirs(tx)
            (ty * torch.tensor(c)).sum().backward()
            np.testing.assert_allclose(yv, ty.detach().numpy(), rtol=1e-12)
            np.testing.assert_allclose(gv, tx.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_max_pool_gradient_goes_to_the_first_maximum_in_row_major_order(target):
    a = np.array([[[[1.0, 3.0, 3.0, 0.5],
                    [3.0, 2.0, -1.0, 3.0]]]])
    x = ng.placeholder(a.shape, "float64")
    gx = ng.grad(ng.sum(ng.max_pool2d(x, 2) * np.array([2.0, 5.0])), x)
    np.testing.assert_array_equal(run(gx, {x: a}, target), [[[[0.0, 2.0, 5.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])


@pytest.mark.parametrize("kernel", [2, (3, 2), (1, 3)])
def test_max_pool_gradient_when_the_windows_tile_the_input(kernel, target):
    # stride = kernel, no padding, nothing left over: lowered as one map kernel over the
    # windows that writes every input point; ties, -inf and NaN pick as the reference does
    kh, kw = _pair(kernel)
    a = rand((2, 3, 2 * kh, 3 * kw), 3)
    a[0, 0, :kh, :kw] = 0.5                                   # a window of ties
    a[0, 1, :kh, :kw] = -np.inf                               # a window of -inf
    a[1, 2, kh - 1, kw - 1] = np.nan                          # NaN in a window
    a[1, 2, kh:, kw:2 * kw] = np.nan                          # a window of NaN
    x = ng.placeholder(("N", 3, 2 * kh, 3 * kw), "float64")
    y = ng.max_pool2d(x, kernel)
    gx = ng.grad(ng.sum(y * rand((3, 2, 3), 4)), x)
    outs = [y, gx]
    want = run(outs, {x: a}, "reference")
    for got, w in zip(run(outs, {x: a}, target), want):
        np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-14)
    assert np.isnan(want[0][1, 2]).sum() == 2


def test_pools_with_a_symbolic_batch_and_int_max_pool(target):
    x = ng.placeholder(("N", "C", 6, 6), "float32")
    y = ng.max_pool2d(x, 2)
    assert str(y.shape[0]) == "N" and str(y.shape[1]) == "C" and y.shape[2:] == (3, 3)
    fn = compile([x], [y, ng.avg_pool2d(x, 3, 3)], target)
    for n, c in [(1, 2), (3, 1)]:
        a = rand((n, c, 6, 6), n, "float32")
        m, v = fn(a)
        np.testing.assert_allclose(m, pool_loops(a, (2, 2), (2, 2), (0, 0), "max"), rtol=1e-6)
        np.testing.assert_allclose(v, pool_loops(a, (3, 3), (3, 3), (0, 0), "avg"), rtol=1e-5)
    ia = np.arange(2 * 16, dtype=np.int32).reshape(1, 2, 4, 4) % 7 - 3
    xi = ng.placeholder(ia.shape, "int32")
    np.testing.assert_array_equal(run(ng.max_pool2d(xi, 2), {xi: ia}, target),
                                  pool_loops(ia.astype(float), (2, 2), (2, 2), (0, 0), "max").astype(np.int32))


def test_pool_errors():
    x = ng.placeholder((1, 2, 5, 5), name="x")
    with pytest.raises(ng.ShapeError, match="at most half the kernel"):
        ng.max_pool2d(x, 2, padding=2)
    with pytest.raises(ng.ShapeError, match="4-d"):
        ng.avg_pool2d(ng.placeholder((5, 5)), 2)
    with pytest.raises(ng.ShapeError, match="static"):
        ng.max_pool2d(ng.placeholder((1, 2, "H", 5)), 2)
    with pytest.raises(ng.ShapeError, match="larger than the padded input"):
        ng.max_pool2d(x, 6)
    with pytest.raises(ng.ShapeError, match="float"):
        ng.avg_pool2d(ng.placeholder((1, 2, 4, 4), "int32"), 2)
