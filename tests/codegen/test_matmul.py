"""MatmulKernel: BLAS through cython_blas pointers (transposes, alpha/beta, batch
broadcasting, epilogue), integer matmul as loops, against NumPy."""
import contextlib

import numpy as np
import pytest

from passes.program import MatmulKernel, Stage, Store
from progbuild import Dim, ProgBuilder

N = Dim("N")


def _mm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c0=None, epilogue=None, batch=()):
    dt = a.dtype.name
    pb = ProgBuilder()
    ai = pb.buf("a", dt, a.shape, "input")
    bi = pb.buf("b", dt, b.shape, "input")
    m = a.shape[-1] if trans_a else a.shape[-2]
    k = a.shape[-2] if trans_a else a.shape[-1]
    n = b.shape[-2] if trans_b else b.shape[-1]
    out_shape = tuple(batch) + (m, n)
    inputs = [a, b]
    if c0 is not None:
        ci = pb.buf("c", dt, out_shape, "param")
        out = pb.update(ci)
    else:
        out = pb.buf("out", dt, out_shape, "output")
    epi = None
    if epilogue is not None:
        bias = pb.buf("bias", dt, (n,), "input")
        inputs.append(epilogue)
        e = pb.body()
        idx = [e.idx(d) for d in range(len(out_shape))]
        v = e("relu", e("add", e("acc", dtype=dt), e.load(bias, idx[-1]), dtype=dt), dtype=dt)
        epi = Stage((), e.ins, (), [Store(out, tuple(idx), v)])
    if beta and c0 is not None:
        # beta reads the output buffer: start it from the parameter's value
        from passes.program import LoopKernel
        cb = pb.body()
        idx = tuple(cb.idx(d) for d in range(len(out_shape)))
        pb.kernel(LoopKernel("init", out_shape, [Stage((), cb.ins, (), [Store(out, idx, cb.load(ci, *idx))])]))
    pb.kernel(MatmulKernel("mm", ai, bi, out, tuple(batch), m, n, k, trans_a, trans_b, alpha, beta, epi))
    outs, new = pb.run(inputs, [c0] if c0 is not None else [])
    return (new or outs)[0]


def _ref(a, b, trans_a, trans_b):
    A = np.swapaxes(a, -1, -2) if trans_a else a
    B = np.swapaxes(b, -1, -2) if trans_b else b
    return np.matmul(A.astype(np.float64), B.astype(np.float64))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_transposes(dtype, trans_a, trans_b):
    rng = np.random.default_rng(0)
    m, k, n = 37, 19, 23
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    got = _mm(a, b, trans_a, trans_b)
    np.testing.assert_allclose(got, _ref(a, b, trans_a, trans_b), rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)


def test_alpha_beta_accumulate_into_the_output():
    """W_new = W - 0.1 * X^T G: a GEMM with beta = 1, alpha = -0.1."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 30)).astype(np.float32)
    g = rng.standard_normal((64, 20)).astype(np.float32)
    w = rng.standard_normal((30, 20)).astype(np.float32)
    got = _mm(x, g, trans_a=True, alpha=-0.1, beta=1.0, c0=w)
    np.testing.assert_allclose(got, w - 0.1 * x.T.astype(np.float64) @ g, rtol=1e-5, atol=1e-5)


def test_epilogue_bias_relu():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 40)).astype(np.float32)
    w = rng.standard_normal((40, 30)).astype(np.float32)
    bias = rng.standard_normal(30).astype(np.float32)
    got = _mm(x, w, epilogue=bias)
    np.testing.assert_allclose(got, np.maximum(x.astype(np.float64) @ w + bias, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shapes", [((4, 5, 6), (4, 6, 3)), ((2, 1, 5, 6), (3, 6, 2)), ((4, 5, 6), (6, 3)),
                                    ((5, 6), (2, 6, 3)), ((3, 0, 4), (3, 4, 2)), ((3, 5, 0), (3, 0, 2))])
def test_batched_with_broadcast(shapes):
    rng = np.random.default_rng(3)
    a = rng.standard_normal(shapes[0])
    b = rng.standard_normal(shapes[1])
    want = np.matmul(a, b)
    got = _mm(a, b, batch=want.shape[:-2])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_matmul_loops(dtype):
    rng = np.random.default_rng(4)
    a = rng.integers(-9, 9, (3, 7, 5)).astype(dtype)
    b = rng.integers(-9, 9, (5, 4)).astype(dtype)
    np.testing.assert_array_equal(_mm(a, b, batch=(3,)), a @ b)
    np.testing.assert_array_equal(_mm(a[0], b[:, :2].T.copy(), trans_b=True), a[0] @ b[:, :2])


def test_matmul_program_counts_a_library_call():
    pb = ProgBuilder()
    a = pb.buf("a", "float32", (N, 8), "input")
    b = pb.buf("b", "float32", (8, 4), "param")
    o = pb.buf("o", "float32", (N, 4), "output")
    pb.kernel(MatmulKernel("mm", a, b, o, (), N, 4, 8))
    runner, _ = pb.build()
    assert runner.stats["library_calls"] == 1
    x = np.random.default_rng(5).standard_normal((9, 8)).astype(np.float32)
    w = np.random.default_rng(6).standard_normal((8, 4)).astype(np.float32)
    for rows in (9, 0, 1):
        (got,), _ = runner.run([x[:rows].copy()], [w], {"N": rows})
        np.testing.assert_allclose(got, x[:rows] @ w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("case", ["rows", "folded", "batch", "trans_a", "columns", "columns_trans_a",
                                  "columns_batch_of_one"])
def test_big_gemms_split_across_threads(case, n_threads, monkeypatch):
    """Above GEMM_WORK multiply-adds the rows (or batch entries; the columns where
    there are more of them) are split between threads, each making its own BLAS call
    (threshold lowered so small shapes split)."""
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "GEMM_WORK", 1 << 22)
    monkeypatch.setattr(entry, "N_THREADS", n_threads)
    GEMM_WORK = entry.GEMM_WORK
    rng = np.random.default_rng(7)
    if case == "rows":
        a, b, kw = rng.standard_normal((301, 128)), rng.standard_normal((128, 131)), {}
    elif case == "folded":
        a, b, kw = rng.standard_normal((3, 101, 128)), rng.standard_normal((128, 130)), {"batch": (3,)}
    elif case == "batch":
        a, b, kw = rng.standard_normal((5, 100, 96)), rng.standard_normal((5, 96, 99)), {"batch": (5,)}
    elif case == "trans_a":
        a, b, kw = rng.standard_normal((128, 301)), rng.standard_normal((128, 131)), {"trans_a": True}
    elif case == "columns":
        a, b, kw = rng.standard_normal((131, 128)), rng.standard_normal((128, 301)), {}
    elif case == "columns_trans_a":
        a, b, kw = rng.standard_normal((128, 131)), rng.standard_normal((128, 301)), {"trans_a": True}
    else:
        a, b, kw = rng.standard_normal((1, 110, 128)), rng.standard_normal((128, 331)), {"batch": (1,)}
    want = _ref(a, b, kw.get("trans_a", False), False)
    assert _splits_columns(a, b, **kw) == case.startswith("columns")
    assert want.size * a.shape[-2 if kw.get("trans_a") else -1] >= GEMM_WORK
    np.testing.assert_allclose(_mm(a, b, **kw), want, rtol=1e-10, atol=1e-10)


def _splits_columns(a, b, trans_a=False, batch=()):
    """Whether codegen/llvm/matmul.py splits the product of _mm(a, b) by columns."""
    from codegen.llvm.matmul import splits_columns
    from passes.program import Buffer
    m, k = (a.shape[-1], a.shape[-2]) if trans_a else a.shape[-2:]
    bufs = {0: Buffer(0, "a", "float64", a.shape, "input"), 1: Buffer(1, "b", "float64", b.shape, "input"),
            2: Buffer(2, "o", "float64", tuple(batch) + (m, b.shape[-1]), "output")}

    class _Program:
        buffers = bufs
    return splits_columns(_Program, MatmulKernel("mm", 0, 1, 2, tuple(batch), m, b.shape[-1], k, trans_a))


def test_small_products_run_on_one_blas_thread_and_restore_the_count():
    """A GEMM below BLAS_THREAD_WORK multiply-adds runs on one BLAS thread and sets
    the count back to the configured one."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from codegen.llvm import blas
    from codegen.llvm.matmul import BLAS_THREAD_WORK
    assert BLAS_THREAD_WORK > 8 * 8 * 8
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((8, 8)), rng.standard_normal((8, 8))
    np.testing.assert_allclose(_mm(a, b), a @ b, rtol=1e-12)
    ours = [lib for lib in threadpoolctl.ThreadpoolController().lib_controllers
            if "libscipy_openblas-" in (lib.filepath or "")]
    assert ours and all(lib.get_num_threads() == blas.configured_threads() for lib in ours)


def _multi_axis_programs():
    """Two products whose matrix dimensions span several buffer axes (a whole-batch
    conv's shapes): y[g, o, N, 5, 6] = w[g, o, k] @ cols[g, k, N, 5, 6], its epilogue
    storing y + 1 in NCHW order, and dw[g, o, k] = gy[g, o, N, 30] @ cols[g, k, N, 30]ᵀ."""
    pb = ProgBuilder()
    w = pb.buf("w", "float64", (2, 3, 4), "input")
    cols = pb.buf("cols", "float64", (2, 4, N, 5, 6), "input")
    gy = pb.buf("gy", "float64", (2, 3, N, 30), "input")
    y = pb.buf("y", "float64", (2, 3, N, 5, 6), "output")
    nchw = pb.buf("nchw", "float64", (N, 6, 5, 6), "output")
    dw = pb.buf("dw", "float64", (2, 3, 4), "output")
    e = pb.body()
    g, o, n, h, x = (e.idx(k) for k in range(5))
    c = e("add", e("mul", g, e("const", value=3, dtype="int64"), dtype="int64"), o, dtype="int64")
    v = e("add", e("acc", dtype="float64"), e("const", value=1.0, dtype="float64"), dtype="float64")
    epi = Stage((), e.ins, (), [Store(y, (g, o, n, h, x), e("acc", dtype="float64")), Store(nchw, (n, c, h, x), v)])
    pb.kernel(MatmulKernel("conv", w, cols, y, (2,), 3, (N, 5, 6), 4, epilogue=epi))
    cols_flat = pb.buf("cols_flat", "float64", (2, 4, N, 30), "view")
    pb.buffers[cols_flat].view_of = cols
    pb.kernel(MatmulKernel("dw", gy, cols_flat, dw, (2,), 3, 4, (N, 30), trans_b=True))
    return pb


def test_matrix_dimensions_over_several_axes():
    """m, n or k given as a tuple of sizes: one product per batch entry over the
    flattened axes, on the CPU and in the Program interpreter, with a symbolic N."""
    from passes.program_interpreter import run_program
    rng = np.random.default_rng(8)
    for n in (3, 1):
        w, cols, gy = (rng.standard_normal(s) for s in ((2, 3, 4), (2, 4, n, 5, 6), (2, 3, n, 30)))
        y = np.matmul(w, cols.reshape(2, 4, -1)).reshape(2, 3, n, 5, 6)
        want = [y, (y + 1).transpose(2, 0, 1, 3, 4).reshape(n, 6, 5, 6),
                np.matmul(gy.reshape(2, 3, -1), np.swapaxes(cols.reshape(2, 4, -1), 1, 2))]
        pb = _multi_axis_programs()
        got_cpu, _ = pb.run([w, cols, gy], env={"N": n})
        got_interp = run_program(pb.program(), [w, cols, gy], [], {"N": n})[0]
        for got in (got_cpu, got_interp):
            for g_, w_ in zip(got, want):
                np.testing.assert_allclose(g_, w_, rtol=1e-12, atol=1e-12)


@contextlib.contextmanager
def _recording_blas_threads():
    """The generated code's BLAS thread-count calls, as (thread id, count) pairs, through
    a stand-in for the BLAS's set_num_threads_local (LLVM started first, so the real
    symbol is not registered again over it)."""
    import ctypes
    import threading

    import llvmlite.binding as llvm

    from codegen.llvm import blas
    from runtime.compile_cache import load_pipeline
    load_pipeline()
    calls = []

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
    def record(n):
        calls.append((threading.get_ident(), n))
        return 1

    real = blas.gemm_addresses()["blas_threads_local"]
    llvm.add_symbol("nngraph_blas_threads_local", ctypes.cast(record, ctypes.c_void_p).value)
    try:
        yield calls
    finally:
        llvm.add_symbol("nngraph_blas_threads_local", real)


def test_parts_of_a_split_gemm_run_on_one_blas_thread(monkeypatch):
    """A product split across our own threads makes each part's BLAS call on one BLAS
    thread, however big the part: BLAS workers woken on top of our threads would
    oversubscribe the cores (a (1600, 256, 1024) product on 2 cores took 5-10 ms
    instead of 2.9 ms). The generated code's thread-count calls are recorded through
    a stand-in for the BLAS's set_num_threads_local."""
    import codegen.llvm.entry as entry
    import codegen.llvm.matmul as matmul
    monkeypatch.setattr(entry, "GEMM_WORK", 1 << 16)
    monkeypatch.setattr(matmul, "BLAS_THREAD_WORK", 1 << 12)
    monkeypatch.setattr(entry, "N_THREADS", 2)
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((256, 128)), rng.standard_normal((128, 160))
    with _recording_blas_threads() as calls:
        np.testing.assert_allclose(_mm(a, b), a @ b, rtol=1e-10, atol=1e-10)
    assert 128 * 128 * 160 >= matmul.BLAS_THREAD_WORK   # each half alone would use every BLAS thread
    ones = {tid for tid, n in calls if n == 1}
    assert len(ones) == 2, calls                     # both parts, each on its own thread, asked for one


def test_batch_one_convolution_splits_on_our_threads_by_columns(monkeypatch):
    """A batch-1 convolution's product (64 rows, 900 columns of im2col) is own_threads:
    split across our threads by columns from BLAS_THREAD_WORK (far below GEMM_WORK),
    each part a one-BLAS-thread call on its columns of cols and y, the epilogue (bias,
    relu) after; values as target="reference". At batch 2 the product is not marked."""
    import codegen.llvm.entry as entry
    import codegen.llvm.matmul as matmul
    import nngraph as ng
    monkeypatch.setattr(matmul, "BLAS_THREAD_WORK", 1 << 12)
    monkeypatch.setattr(entry, "N_THREADS", 3)
    rng = np.random.default_rng(12)
    w = ng.parameter(rng.standard_normal((64, 8, 3, 3)).astype(np.float32), name="w")
    b = ng.parameter(rng.standard_normal((1, 64, 1, 1)).astype(np.float32), name="b")
    for batch in (1, 2):
        x = ng.placeholder((batch, 8, 30, 30), name="x")
        y = ng.relu(ng.conv2d(x, w, padding=1) + b)
        xv = rng.standard_normal((batch, 8, 30, 30)).astype(np.float32)
        with _recording_blas_threads() as recorded:
            fn = ng.compile([x], y, target="cpu")
            got = fn(xv)
        calls = recorded if batch == 1 else calls
        np.testing.assert_allclose(got, ng.compile([x], y, target="reference")(xv), rtol=1e-4, atol=1e-4)
        program = fn.runner.program
        (kern,) = [k for k in program.schedule if isinstance(k, MatmulKernel)]
        assert kern.own_threads == (batch == 1)
        assert batch > 1 or matmul.splits_columns(program, kern)    # (batch 2's layout is measured)
    assert 64 * 72 * 900 < entry.GEMM_WORK
    assert len({tid for tid, n in calls if n == 1}) == 3, calls      # each part on its own thread asked for one
