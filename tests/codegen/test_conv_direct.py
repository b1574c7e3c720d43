"""The direct convolution (codegen/llvm/conv_direct.py over passes/direct_window.py's
phase-split copy): its kernel against a float64 NumPy convolution at odd sizes
(widths that are no multiple of the vector, output channels no multiple of the
tile, padding, strides 1 to 3, dilation, non-square windows, any range of output
channels as a thread gets), at the host's vector width and at AVX2's; whole graphs
with NNGRAPH_CONV_LAYOUT=direct (bias, residual add, relu fused, split across
threads) against target="reference"; what it refuses goes the im2col way."""
import os
import subprocess
import sys

import numpy as np
import pytest

import nngraph as ng
from codegen.host import host_facts
from codegen.llvm.conv_direct import compiled_core, tile_shape
from passes.direct_window import DirectWindow, phase_split, window_columns
from passes.program import MatmulKernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WIDTHS = sorted({host_facts().vector_bits, 256})    # AVX2's vectors run on an AVX-512 host too

# (C, O, H, W, (KH, KW), (sh, sw), (pt, pl), (dh, dw))
GEOMETRIES = [
    (3, 5, 13, 19, (3, 3), (1, 1), (1, 1), (1, 1)),
    (8, 13, 9, 30, (3, 3), (1, 1), (0, 0), (1, 1)),
    (4, 9, 23, 19, (7, 7), (2, 2), (3, 3), (1, 1)),
    (6, 17, 11, 10, (3, 3), (2, 2), (1, 1), (1, 1)),
    (2, 4, 10, 11, (2, 3), (1, 2), (1, 0), (1, 1)),
    (5, 7, 12, 12, (3, 3), (3, 1), (2, 2), (2, 1)),
    (1, 1, 5, 5, (5, 5), (1, 1), (0, 0), (1, 1)),
    (9, 33, 7, 7, (3, 3), (1, 1), (1, 1), (1, 1)),
]


def _naive(x, w, stride, pad, dil):
    """float64 convolution of one image x [C, H, W] with w [O, C, KH, KW]."""
    C, H, W = x.shape
    O, _, KH, KW = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    OH = (H + 2 * pad[0] - dil[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W + 2 * pad[1] - dil[1] * (KW - 1) - 1) // stride[1] + 1
    y = np.zeros((O, OH, OW))
    for i in range(KH):
        for j in range(KW):
            patch = xp[:, i * dil[0]:i * dil[0] + stride[0] * (OH - 1) + 1:stride[0],
                       j * dil[1]:j * dil[1] + stride[1] * (OW - 1) + 1:stride[1]]
            y += np.einsum("oc,chw->ohw", w[:, :, i, j].astype(np.float64), patch)
    return y


def _case(geo, seed=0):
    C, O, H, W, (KH, KW), stride, pad, dil = geo
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((C, H, W)).astype(np.float32)
    w = rng.standard_normal((O, C, KH, KW)).astype(np.float32)
    want = _naive(x, w, stride, pad, dil)
    win = DirectWindow(C, KH, KW, *stride, *dil, want.shape[1], want.shape[2])
    return x, w, want, win


@pytest.mark.parametrize("geo", GEOMETRIES)
def test_the_copy_and_its_tap_rule_are_im2col(geo):
    """window_columns(phase_split(x)) is im2col's matrix: its product with w is the conv."""
    x, w, want, win = _case(geo)
    cols = window_columns(phase_split(x.astype(np.float64), win, *geo[6]), win)
    got = w.reshape(w.shape[0], -1).astype(np.float64) @ cols.reshape(cols.shape[0], -1)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("geo", GEOMETRIES)
def test_the_kernel_matches_numpy(geo, bits):
    x, w, want, win = _case(geo)
    y = np.full(want.shape, np.nan, np.float32)
    copy = phase_split(x, win, *geo[6])
    copy[win.C * win.channel_stride():] = np.nan       # the slack is never written: never used
    compiled_core(win, bits)(copy, w.reshape(w.shape[0], -1), y)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("bits", WIDTHS)
def test_any_range_of_output_channels_is_computed_and_nothing_else(bits):
    """A thread's range [lo, hi) need not start or end on a tile: it writes exactly its
    channels (the others keep their sentinel)."""
    geo = GEOMETRIES[3]
    x, w, want, win = _case(geo, seed=1)
    core = compiled_core(win, bits)
    copy, wm = phase_split(x, win, *geo[6]), w.reshape(w.shape[0], -1)
    R, _ = tile_shape(bits)
    for lo, hi in ((0, 0), (1, 2), (3, 3 + R + 1), (2, 17), (16, 17)):
        y = np.full(want.shape, -7.0, np.float32)
        core(copy, wm, y, lo, hi)
        np.testing.assert_allclose(y[lo:hi], want[lo:hi], rtol=1e-4, atol=1e-4 * np.abs(want).max())
        assert (y[:lo] == -7).all() and (y[hi:] == -7).all()


def test_bad_arrays_are_refused_by_name():
    x, w, want, win = _case(GEOMETRIES[0])
    core = compiled_core(win)
    copy, wm, y = phase_split(x, win, 1, 1), w.reshape(w.shape[0], -1), np.zeros(want.shape, np.float32)
    with pytest.raises(ValueError, match=r"x must be a C-contiguous float32 array of \d+ elements, got float64"):
        core(copy.astype(np.float64), wm, y)
    with pytest.raises(ValueError, match="w must be"):
        core(copy, wm[:, :-1], y)
    with pytest.raises(ValueError, match=r"output channels \[0, 9\) outside \[0, 5\)"):
        core(copy, wm, y, 0, 9)


@pytest.fixture
def three_threads(monkeypatch):
    """Small kernels split too, across three threads (ranges off the tile)."""
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "THREAD_WORK", 1 << 8)
    monkeypatch.setattr(entry, "GEMM_COLUMN_WORK", 1 << 8)
    monkeypatch.setattr(entry, "N_THREADS", 3)


def _block(rng, batch=1, groups=1, dtype=np.float32, stride=2, channels=13):
    """relu(conv(x) + b + r): a residual block's last convolution."""
    w = ng.parameter(rng.standard_normal((channels, 8 // groups, 3, 3)).astype(dtype), name="w")
    b = ng.parameter(rng.standard_normal((1, channels, 1, 1)).astype(dtype), name="b")
    x = ng.placeholder((batch, 8, 13, 12), name="x", dtype=np.dtype(dtype).name)
    oh, ow = (13 + 2 - 3) // stride + 1, (12 + 2 - 3) // stride + 1
    r = ng.placeholder((batch, channels, oh, ow), name="r", dtype=np.dtype(dtype).name)
    y = ng.relu(ng.conv2d(x, w, stride=stride, padding=1, groups=groups) + b + r)
    vals = (rng.standard_normal((batch, 8, 13, 12)).astype(dtype),
            rng.standard_normal((batch, channels, oh, ow)).astype(dtype))
    return [x, r], y, vals


def _direct_kernels(fn):
    return [k for k in fn.runner.program.schedule if isinstance(k, MatmulKernel) and k.window is not None]


@pytest.mark.usefixtures("three_threads")
@pytest.mark.parametrize("stride", [1, 2])
def test_a_forced_direct_layer_matches_the_reference_with_its_epilogue_fused(monkeypatch, stride):
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "direct")
    ins, y, vals = _block(np.random.default_rng(stride), stride=stride)
    fn = ng.compile(ins, y, target="cpu")
    assert len(_direct_kernels(fn)) == 1 and "direct DirectWindow(C=8" in fn.dump("kernels")
    assert "cols" not in fn.dump("kernels")                 # no im2col
    assert "conv2d_fused_rows" in fn.dump("llvm")           # product + epilogue per thread's part
    want = ng.compile(ins, y, target="reference")(*vals)
    np.testing.assert_allclose(fn(*vals), want, rtol=1e-4, atol=1e-4)


def test_the_interpreter_runs_a_direct_product_by_the_same_rule(monkeypatch):
    """The program interpreter's semantics of a MatmulKernel with a window
    (window_columns) against the im2col program's."""
    from passes.lowering import to_program
    from passes.program_interpreter import run_program
    from runtime import conv_choice
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "direct")
    ins, y, vals = _block(np.random.default_rng(5))
    fn = ng.compile(ins, y, target="cpu")
    program = to_program(fn.graph, 2, conv_choice.conv_choice_for("cpu"))
    assert any(getattr(k, "window", None) is not None for k in program.schedule)
    (got,), _ = run_program(program, list(vals), [p.value for p in fn.params], {}, False)
    want = ng.compile(ins, y, target="reference")(*vals)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch,groups,dtype", [(2, 1, np.float32), (1, 2, np.float32), (1, 1, np.float64)])
def test_what_it_cannot_compute_goes_the_im2col_way(monkeypatch, batch, groups, dtype):
    """A batch of two, groups, float64: no direct kernel, values still right."""
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "direct")
    ins, y, vals = _block(np.random.default_rng(6), batch, groups, dtype, channels=14)
    fn = ng.compile(ins, y, target="cpu")
    assert _direct_kernels(fn) == []
    np.testing.assert_allclose(fn(*vals), ng.compile(ins, y, target="reference")(*vals), rtol=1e-4, atol=1e-4)


def test_a_training_graph_keeps_im2col_and_its_gradients_check(monkeypatch):
    """With gradients the layer's three products share im2col's matrix: no direct
    kernel; the gradient against finite differences."""
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "direct")
    rng = np.random.default_rng(8)
    w = ng.parameter(rng.standard_normal((5, 3, 3, 3)), name="w")
    x = ng.placeholder((1, 3, 7, 6), name="x", dtype="float64")
    loss = (ng.relu(ng.conv2d(x, w, padding=1)) ** 2).sum()
    (gw,) = ng.grad(loss, [w])
    fn = ng.compile([x], [loss, gw], target="cpu")
    assert _direct_kernels(fn) == []
    xv = rng.standard_normal((1, 3, 7, 6))
    _, got = fn(xv)
    w0, eps, k = w.value.copy(), 1e-6, (2, 1, 0, 2)
    f = ng.compile([x], loss, target="cpu")
    up, down = w0.copy(), w0.copy()
    up[k] += eps
    down[k] -= eps
    w.value = up
    lp = f(xv)
    w.value = down
    lm = f(xv)
    assert abs((lp - lm) / (2 * eps) - got[k]) < 1e-5 * max(1.0, abs(got[k]))


AVX2_HEADER = r"""
import re
import numpy as np
import nngraph as ng
from codegen.host import host_facts
from codegen.llvm import target
assert not target.has_feature("avx512f") and host_facts().vector_bits == 256
rng = np.random.default_rng(3)
"""
AVX2 = AVX2_HEADER + r"""
w = ng.parameter(rng.standard_normal((13, 8, 3, 3)).astype(np.float32), name="w")
b = ng.parameter(rng.standard_normal((1, 13, 1, 1)).astype(np.float32), name="b")
x = ng.placeholder((1, 8, 13, 21), name="x")
y = ng.relu(ng.conv2d(x, w, padding=1) + b)
fn = ng.compile([x], y, target="cpu")
assert "direct DirectWindow" in fn.dump("kernels")
asm = fn.dump("asm")
assert re.search(r"vfmadd\d+ps\s[^\n]*ymm", asm) and "zmm" not in asm
xv = rng.standard_normal((1, 8, 13, 21)).astype(np.float32)
np.testing.assert_allclose(fn(xv), ng.compile([x], y, target="reference")(xv), rtol=1e-4, atol=1e-4)
print("ok")
"""


def test_avx2_code_generation(tmp_path):
    """NNGRAPH_CPU_FEATURES=-avx512f: 8-lane vectors (ymm, no zmm), its tile, right values."""
    run_under_avx2(AVX2, tmp_path)


def run_under_avx2(script, tmp_path):
    """Run `script` in a process with AVX-512 off and every layer direct; it prints "ok"."""
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(tmp_path), NNGRAPH_CPU_FEATURES="-avx512f",
               NNGRAPH_CONV_LAYOUT="direct", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NNGRAPH_VECTOR_BITS", None)
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "ok" in p.stdout, p.stdout[-2000:] + p.stderr[-4000:]


def test_the_tile_fits_the_vector_registers():
    """R*T accumulators + T input vectors + one broadcast weight within 32 (AVX-512)
    or 16 (AVX2) registers, with room left for the scheduler; and in the emitted inner loop,
    vector stack references (spills) are rare: under one per 50 multiply-adds (the
    4x6 tile had 46-97 per 216)."""
    import re

    import llvmlite.ir as ir

    from codegen.llvm import target
    from codegen.llvm.conv_direct import SCHEDULER_REGISTERS, emit_direct_core
    assert tile_shape(512) == (8, 3) and tile_shape(256) == (4, 2)
    for bits, regs in ((512, 32), (256, 16), (128, 16)):
        r, t = tile_shape(bits)
        assert r * t + t + 1 <= regs - SCHEDULER_REGISTERS
    module = ir.Module("t")
    module.triple, module.data_layout = target.triple(), target.data_layout()
    core = emit_direct_core(module, "core", DirectWindow(64, 3, 3, 1, 1, 1, 1, 56, 56), host_facts().vector_bits)
    core.linkage = "external"
    blocks = re.split(r"\n(?=\.LBB)", target.emit_assembly(target.optimize(str(module))))
    inner = max(blocks, key=lambda blk: blk.count("vfmadd"))
    spills = [ln for ln in inner.splitlines() if "(%rsp)" in ln and "mm" in ln]
    assert inner.count("vfmadd") >= 9 * 8 and 50 * len(spills) < inner.count("vfmadd"), inner


def test_a_stored_program_keeps_its_window(monkeypatch):
    """The compile cache stores the Program (passes/program_codec.py): a direct
    product's window comes back equal, and the decoded Program runs the same."""
    from passes.lowering import to_program
    from passes.program_codec import decode_program, encode_program
    from passes.program_interpreter import run_program
    from runtime import conv_choice
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "direct")
    ins, y, vals = _block(np.random.default_rng(9))
    fn = ng.compile(ins, y, target="cpu")
    program = to_program(fn.graph, 2, conv_choice.conv_choice_for("cpu"))
    back = decode_program(*encode_program(program))
    windows = [k.window for k in back.schedule if isinstance(k, MatmulKernel) and k.window is not None]
    assert windows == [k.window for k in program.schedule if isinstance(k, MatmulKernel) and k.window is not None]
    assert len(windows) == 1 and isinstance(windows[0], DirectWindow)
    params = [p.value for p in fn.params]
    (want,), _ = run_program(program, list(vals), params, {}, False)
    (got,), _ = run_program(back, list(vals), params, {}, False)
    np.testing.assert_array_equal(got, want)
