"""The direct convolution's epilogue in registers (codegen/llvm/conv_epilogue.py) and
its 1x1 stride-1 layers read in place (passes/direct_window.in_place_window): the
kernel against a float64 NumPy convolution + bias + residual + relu at odd sizes
(channels no multiple of the tile, points no multiple of the vector), any range of
output channels, the host's vectors and AVX2's; x read in place right up to an
unreadable page; whole graphs against target="reference", split across threads, and
the program interpreter; epilogues of other forms keep their own pass and stay right."""
import ctypes
import mmap

import numpy as np
import pytest

import nngraph as ng
from codegen.host import host_facts
from codegen.llvm.conv_direct import compiled_core, tile_shape
from codegen.llvm.conv_epilogue import bias_residual_relu
from passes.direct_window import DirectWindow, in_place_window, phase_split, window_of
from test_conv_direct import AVX2_HEADER, _direct_kernels, run_under_avx2, three_threads  # noqa: F401

WIDTHS = sorted({host_facts().vector_bits, 256})

# (C, O, H, W, K, padding): 1x1 in place (63, 49, 20 points), a padded 3x3
GEOMETRIES = [(13, 19, 7, 9, 1, 0), (9, 33, 7, 7, 1, 0), (5, 7, 4, 5, 1, 0), (6, 11, 9, 10, 3, 1)]


def _want(x, w, b, r, residual):
    """float64 relu(conv(x, w) + b + r) of one image, stride 1, padding (K-1)//2."""
    C, H, W = x.shape
    O, _, K, _ = w.shape
    p = (K - 1) // 2
    xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p)))
    y = np.zeros((O, H + 2 * p - K + 1, W + 2 * p - K + 1))
    for i in range(K):
        for j in range(K):
            y += np.einsum("oc,chw->ohw", w[:, :, i, j].astype(np.float64), xp[:, i:i + y.shape[1], j:j + y.shape[2]])
    y += b.astype(np.float64)[:, None, None]
    if residual:
        y += r.astype(np.float64)
    return np.maximum(y, 0)


def _case(geo, seed=0):
    C, O, H, W, K, p = geo
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((C, H, W)).astype(np.float32)
    w = rng.standard_normal((O, C, K, K)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    OH, OW = H + 2 * p - K + 1, W + 2 * p - K + 1
    r = rng.standard_normal((O, OH, OW)).astype(np.float32)
    g = dict(Cg=C, KH=K, KW=K, sh=1, sw=1, dh=1, dw=1, OH=OH, OW=OW, pt=p, pl=p, H=H, W=W)
    win = window_of(g)
    xin = x.reshape(-1).copy() if win.in_place else phase_split(x, win, p, p)
    return xin, w.reshape(O, -1), b, r, win, (x, w)


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("geo", GEOMETRIES)
def test_the_kernel_applies_bias_residual_and_relu(geo, residual, bits):
    xin, wm, b, r, win, (x, w) = _case(geo)
    assert win.in_place == (geo[4] == 1)
    want = _want(x, w, b, r, residual)
    core = compiled_core(win, bits, bias_residual_relu(residual))
    room = np.full(want.size + 64, -7.0, np.float32)      # y, then 64 floats that must stay untouched
    y = room[:want.size].reshape(want.shape)
    y[...] = np.nan
    core(xin, wm, y, b, *([r] if residual else []))
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert (y >= 0).all() and (room[want.size:] == -7).all()


@pytest.mark.parametrize("bits", WIDTHS)
def test_any_range_of_output_channels_is_finished_and_nothing_else(bits):
    geo = GEOMETRIES[0]
    xin, wm, b, r, win, (x, w) = _case(geo, seed=1)
    want = _want(x, w, b, r, True)
    core = compiled_core(win, bits, bias_residual_relu(True))
    R, _ = tile_shape(bits)
    for lo, hi in ((0, 0), (1, 2), (3, 3 + R + 1), (2, 19), (18, 19)):
        y = np.full(want.shape, -7.0, np.float32)
        core(xin, wm, y, b, r, lo, hi)
        np.testing.assert_allclose(y[lo:hi], want[lo:hi], rtol=1e-4, atol=1e-4 * np.abs(want).max())
        assert (y[:lo] == -7).all() and (y[hi:] == -7).all()


def _guarded(n):
    """A float32 array of n elements that ends right where an unreadable page begins."""
    page = mmap.PAGESIZE
    size = -(-n * 4 // page) * page
    mem = mmap.mmap(-1, size + page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mprotect(ctypes.c_void_p(base + size), ctypes.c_size_t(page), 0) == 0
    arr = np.frombuffer(mem, np.float32, n, offset=size - n * 4)
    return arr, mem


@pytest.mark.parametrize("bits", WIDTHS)
def test_in_place_the_kernel_reads_nothing_past_x(bits):
    """x read in place has no slack: the last vector's loads are masked (a read past
    x's end would touch the unreadable page and crash)."""
    geo = GEOMETRIES[0]        # 63 points: a vector of 7 (or 15) past the end unmasked
    xin, wm, b, r, win, (x, w) = _case(geo, seed=2)
    assert win.elements() == xin.size
    guarded, mem = _guarded(xin.size)
    guarded[:] = xin
    y = np.empty((19, 7, 9), np.float32)
    compiled_core(win, bits, bias_residual_relu(True))(guarded, wm, y, b, r)
    np.testing.assert_allclose(y, _want(x, w, b, r, True), rtol=1e-4, atol=1e-3)
    del guarded
    mem.close()


def test_bad_operands_are_refused_by_name():
    xin, wm, b, r, win, _ = _case(GEOMETRIES[0])
    core = compiled_core(win, epilogue=bias_residual_relu(True))
    y = np.zeros((19, 7, 9), np.float32)
    with pytest.raises(ValueError, match="the epilogue reads 2 operands, got 1"):
        core(xin, wm, y, b)
    with pytest.raises(ValueError, match=r"epilogue operand 1 \(point\) must be a C-contiguous float32 array "
                                         r"of 1197 elements, got float32 \(19, 7, 8\)"):
        core(xin, wm, y, b, r[:, :, :8].copy())


def test_the_in_place_rule():
    g = dict(KH=1, KW=1, sh=1, sw=1, pt=0, pl=0, H=7, W=9, OH=7, OW=9)
    assert in_place_window(g)
    assert not in_place_window(dict(g, sh=2, OH=4))
    assert not in_place_window(dict(g, pt=1, OH=9))
    assert not in_place_window(dict(g, KH=3, KW=3, pt=1, pl=1))
    assert DirectWindow(5, 1, 1, 1, 1, 1, 1, 7, 9, in_place=True).elements() == 5 * 63


def _block(rng, k=1, tail=lambda y, b, r: ng.relu(y + b + r)):
    """tail(conv(x), b, r) at 13 -> 19 channels, 7x9 points."""
    w = ng.parameter(rng.standard_normal((19, 13, k, k)).astype(np.float32), name="w")
    b = ng.parameter(rng.standard_normal((1, 19, 1, 1)).astype(np.float32), name="b")
    x = ng.placeholder((1, 13, 7, 9), name="x")
    r = ng.placeholder((1, 19, 7, 9), name="r")
    y = tail(ng.conv2d(x, w, padding=(k - 1) // 2), b, r)
    vals = (rng.standard_normal((1, 13, 7, 9)).astype(np.float32), rng.standard_normal((1, 19, 7, 9)).astype(np.float32))
    return [x, r], y, vals


@pytest.mark.usefixtures("three_threads")
@pytest.mark.parametrize("k", [1, 3])
def test_a_direct_layer_carries_its_epilogue_in_registers(monkeypatch, k):
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "direct")
    ins, y, vals = _block(np.random.default_rng(k), k)
    fn = ng.compile(ins, y, target="cpu")
    (kern,) = _direct_kernels(fn)
    assert kern.window.in_place == (k == 1)
    if k == 1:
        assert "xphase" not in fn.dump("kernels")             # x read in place: no copy
    llvm = fn.dump("llvm")
    assert "conv2d_fused_rows" in llvm and "conv2d_epi" not in llvm    # no pass of its own
    want = ng.compile(ins, y, target="reference")(*vals)
    np.testing.assert_allclose(fn(*vals), want, rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("three_threads")
@pytest.mark.parametrize("tail", [lambda y, b, r: ng.relu(y * 2.0 + 1.0) + r,      # an FMA in the scalar pass
                                  lambda y, b, r: ng.sigmoid(y + b) * r,            # no vector form here
                                  lambda y, b, r: ng.relu(y + b + r[:, :, :, :1])])  # read per row of points
def test_other_epilogues_keep_their_own_pass_and_stay_right(monkeypatch, tail):
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "direct")
    ins, y, vals = _block(np.random.default_rng(4), 1, tail)
    fn = ng.compile(ins, y, target="cpu")
    assert len(_direct_kernels(fn)) == 1
    assert "conv2d_epi" in fn.dump("llvm")
    want = ng.compile(ins, y, target="reference")(*vals)
    np.testing.assert_allclose(fn(*vals), want, rtol=1e-4, atol=1e-4)


def test_the_fused_form_is_bitwise_the_separate_pass(monkeypatch):
    """The same float32 ops in the same order: a 1x1 direct layer with its epilogue in
    registers gives exactly what the product + the epilogue's own pass give (the
    latter forced by an epilogue whose value is also stored before the relu)."""
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "direct")
    ins, y, vals = _block(np.random.default_rng(6))
    fused = ng.compile(ins, y, target="cpu")
    ins2, y2, _ = _block(np.random.default_rng(6), tail=lambda c, b, r: (ng.relu(c + b + r), c + b + r))
    both = ng.compile(ins2, list(y2), target="cpu")
    assert "conv2d_epi" not in fused.dump("llvm") and "conv2d_epi" in both.dump("llvm")
    np.testing.assert_array_equal(fused(*vals), both(*vals)[0])


def test_the_interpreter_runs_an_in_place_product(monkeypatch):
    from passes.lowering import to_program
    from passes.program_interpreter import run_program
    from runtime import conv_choice
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "direct")
    ins, y, vals = _block(np.random.default_rng(5))
    fn = ng.compile(ins, y, target="cpu")
    program = to_program(fn.graph, 2, conv_choice.conv_choice_for("cpu"))
    assert any(getattr(k, "window", None) is not None and k.window.in_place for k in program.schedule)
    (got,), _ = run_program(program, list(vals), [p.value for p in fn.params], {}, False)
    np.testing.assert_allclose(got, ng.compile(ins, y, target="reference")(*vals), rtol=1e-5, atol=1e-5)


AVX2 = AVX2_HEADER + r"""
w = ng.parameter(rng.standard_normal((19, 13, 1, 1)).astype(np.float32), name="w")
b = ng.parameter(rng.standard_normal((1, 19, 1, 1)).astype(np.float32), name="b")
x = ng.placeholder((1, 13, 7, 9), name="x")
r = ng.placeholder((1, 19, 7, 9), name="r")
y = ng.relu(ng.conv2d(x, w) + b + r)
fn = ng.compile([x, r], y, target="cpu")
assert "direct DirectWindow" in fn.dump("kernels") and "in_place=True" in fn.dump("kernels")
assert "conv2d_epi" not in fn.dump("llvm")
asm = fn.dump("asm")
assert re.search(r"vfmadd\d+ps\s[^\n]*ymm", asm) and "zmm" not in asm
vals = rng.standard_normal((1, 13, 7, 9)).astype(np.float32), rng.standard_normal((1, 19, 7, 9)).astype(np.float32)
np.testing.assert_allclose(fn(*vals), ng.compile([x, r], y, target="reference")(*vals), rtol=1e-4, atol=1e-4)
print("ok")
"""


def test_avx2_code_generation(tmp_path):
    """NNGRAPH_CPU_FEATURES=-avx512f: a 1x1 layer in place with its epilogue in ymm registers."""
    run_under_avx2(AVX2, tmp_path)
