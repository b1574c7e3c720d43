"""MatmulKernel: BLAS calls (transposes, alpha/beta, batch broadcasting, epilogue,
products split across threads) against NumPy, for every BLAS candidate installed
(scipy's OpenBLAS, MKL: conftest.blas_candidate); integer matmul as loops."""
import ctypes

import numpy as np
import pytest

from passes.program import MatmulKernel, Stage, Store
from blas_scripts import installed_blas
from progbuild import Dim, ProgBuilder

N = Dim("N")
pytestmark = pytest.mark.usefixtures("blas_candidate")


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
@pytest.mark.parametrize("case", ["rows", "folded", "batch", "trans_a"])
def test_big_gemms_split_across_threads(case, n_threads, monkeypatch):
    """Above GEMM_WORK multiply-adds the rows (or batch entries) are split between
    threads, each making its own BLAS call (threshold lowered so small shapes split)."""
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
    else:
        a, b, kw = rng.standard_normal((128, 301)), rng.standard_normal((128, 131)), {"trans_a": True}
    want = _ref(a, b, kw.get("trans_a", False), False)
    assert want.size * a.shape[-1 if case != "trans_a" else -2] >= GEMM_WORK
    np.testing.assert_allclose(_mm(a, b, **kw), want, rtol=1e-10, atol=1e-10)


def test_products_call_the_registered_blas(blas_candidate):
    """The parametrisation is real: the generated code calls the sgemm registered when
    it was loaded (a recording stand-in in front of the candidate's)."""
    from codegen.llvm import blas
    from codegen.llvm.blas_call import GEMM_TYPE
    from codegen.llvm.target import register_blas
    addresses = blas.candidate_addresses(blas_candidate)
    real = GEMM_TYPE(addresses["sgemm"])
    calls = []

    @GEMM_TYPE
    def record(*args):
        calls.append(1)
        real(*args)

    register_blas(dict(addresses, sgemm=ctypes.cast(record, ctypes.c_void_p).value))
    try:
        rng = np.random.default_rng(12)
        a, b = rng.standard_normal((9, 7)).astype(np.float32), rng.standard_normal((7, 5)).astype(np.float32)
        np.testing.assert_allclose(_mm(a, b), a @ b, rtol=1e-5, atol=1e-5)
    finally:
        register_blas(addresses)
    assert calls == [1]


def test_small_products_run_on_one_blas_thread_and_restore_the_count(blas_candidate):
    """A GEMM below BLAS_THREAD_WORK multiply-adds runs on one BLAS thread and sets
    the count back to the configured one (OpenBLAS: its global count; MKL: the calling
    thread's own count, which MKL_Set_Num_Threads_Local(0) returns)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from codegen.llvm import blas
    from codegen.llvm.matmul import BLAS_THREAD_WORK
    assert BLAS_THREAD_WORK > 8 * 8 * 8
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((8, 8)), rng.standard_normal((8, 8))
    np.testing.assert_allclose(_mm(a, b), a @ b, rtol=1e-12)
    if blas_candidate == "mkl":       # (the sequential layer has one thread whatever is asked)
        lib = blas.mkl_instance()
        want = 1 if lib.layer == "sequential" else blas.configured_threads()
        assert lib.lib.MKL_Set_Num_Threads_Local(ctypes.c_int(0)) == want
        return
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


def _blas_thread_requests(run):
    """run() with the generated code's set_num_threads_local calls recorded as
    (thread id, count) through a stand-in for the BLAS's function."""
    import ctypes
    import threading

    import llvmlite.binding as llvm

    from codegen.llvm import blas
    from codegen.llvm.target import _init
    from runtime.compile_cache import load_pipeline
    load_pipeline()
    _init()     # LLVM started and its symbols registered first: a compile in run() keeps the stand-in
    calls = []

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
    def record(n):
        calls.append((threading.get_ident(), n))
        return 1

    real = blas.gemm_addresses()["blas_threads_local"]
    llvm.add_symbol("nngraph_blas_threads_local", ctypes.cast(record, ctypes.c_void_p).value)
    try:
        out = run()
    finally:
        llvm.add_symbol("nngraph_blas_threads_local", real)
    return out, calls


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
    got, calls = _blas_thread_requests(lambda: _mm(a, b))
    np.testing.assert_allclose(got, a @ b, rtol=1e-10, atol=1e-10)
    assert 128 * 128 * 160 >= matmul.BLAS_THREAD_WORK   # each half alone would use every BLAS thread
    ones = {tid for tid, n in calls if n == 1}
    assert len(ones) == 2, calls                     # both parts, each on its own thread, asked for one


@pytest.mark.parametrize("case", ["plain", "trans_a", "trans_b", "both", "folded", "epilogue", "beta"])
def test_wide_gemms_split_along_their_columns(case, monkeypatch):
    """A product with more output columns than rows above GEMM_WORK is cut along its
    columns: each of our threads computes C[:, lo:hi] = A @ B[:, lo:hi] on one BLAS
    thread, so each part re-packs only the small A (thresholds lowered so small shapes
    split; values against NumPy for every operand layout)."""
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "GEMM_COLUMN_WORK", 1 << 40)     # the in-loop threshold: not used here
    monkeypatch.setattr(entry, "GEMM_WORK", 1 << 10)
    monkeypatch.setattr(entry, "N_THREADS", 2)
    rng = np.random.default_rng(12)
    ta, tb = case in ("trans_a", "both"), case in ("trans_b", "both")
    a = rng.standard_normal((40, 9) if ta else (9, 40))
    b = rng.standard_normal((131, 40) if tb else (40, 131))
    kw = {"trans_a": ta, "trans_b": tb}
    want = _ref(a, b, ta, tb)
    if case == "folded":
        a = rng.standard_normal((2, 5, 40))
        kw, want = {"batch": (2,)}, _ref(a, b, False, False)
    if case == "epilogue":
        bias = rng.standard_normal(131)
        kw["epilogue"] = bias
        want = np.maximum(want + bias, 0)
    if case == "beta":
        c0 = rng.standard_normal((9, 131))
        kw.update(alpha=0.5, beta=2.0, c0=c0)
        want = 0.5 * want + 2.0 * c0
    got, calls = _blas_thread_requests(lambda: _mm(a, b, **kw))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert len({tid for tid, n in calls if n == 1}) == 2, calls     # two parts, one BLAS thread each


@pytest.mark.parametrize("n_rows, splits", [(3, True), (60, False)])
def test_in_a_loop_step_products_with_few_rows_split_along_their_columns(n_rows, splits, monkeypatch):
    """In a scan's step, a product with more columns than rows (h @ Wh: N rows, H
    columns) is cut along its columns above GEMM_COLUMN_WORK, far below GEMM_WORK; one
    with more rows than columns is not cut there. Values against the loop's oracle."""
    import codegen.llvm.entry as entry
    from runtime.cpu import build_program
    from scan_programs import elman, elman_data
    monkeypatch.setattr(entry, "GEMM_COLUMN_WORK", 1 << 6)
    monkeypatch.setattr(entry, "GEMM_WORK", 1 << 40)
    monkeypatch.setattr(entry, "N_THREADS", 2)
    monkeypatch.setattr(entry, "ROW_LOOPS", False)    # the step-by-step loop (by rows: test_scan_rows.py)
    prog, oracle = elman(F=4, H=24, hoisted=True)
    inputs, params = elman_data(5, n=n_rows, F=4, H=24, seed=3)
    (outs, _), calls = _blas_thread_requests(
        lambda: build_program(prog)[0].run(inputs, params, {"T": 5, "N": n_rows}))
    for got, want in zip(outs, oracle(*inputs, *params)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
    assert (len({tid for tid, n in calls if n == 1}) > 1) == splits, calls


@pytest.mark.parametrize("blas_candidate", [c for c in installed_blas() if c == "mkl"], indirect=True)
@pytest.mark.parametrize("trans_b", [False, True])
def test_mkl_rows_do_not_depend_on_how_the_product_is_cut(trans_b, blas_candidate, monkeypatch):
    """With MKL each row's value does not depend on how our threads cut the product
    (nor on its operands' alignment): its reproducible mode (mkl.py: CBWR
    AUTO,STRICT; without it rows of a 32x300x200 float32 product differed by up to
    4e-5 between one call and three). OpenBLAS promises no such thing (its kernels
    for leftover rows round differently; this product differs there too)."""
    import codegen.llvm.entry as entry
    rng = np.random.default_rng(13)
    a = rng.standard_normal((32, 300)).astype(np.float32)
    b = rng.standard_normal((200, 300) if trans_b else (300, 200)).astype(np.float32)
    monkeypatch.setattr(entry, "N_THREADS", 1)
    whole = _mm(a, b, trans_b=trans_b)
    monkeypatch.setattr(entry, "GEMM_WORK", 1 << 12)
    for threads in (2, 3):
        monkeypatch.setattr(entry, "N_THREADS", threads)
        np.testing.assert_array_equal(_mm(a, b, trans_b=trans_b), whole)


def test_batch_one_convolution_splits_on_our_threads(monkeypatch):
    """A batch-1 convolution's product (64 rows, 900 columns of im2col) is own_threads:
    split across our threads from GEMM_COLUMN_WORK (far below GEMM_WORK), each part a
    one-BLAS-thread call, the epilogue (bias, relu) after; values as target="reference".
    At batch 2 the product is not marked."""
    import codegen.llvm.entry as entry
    import codegen.llvm.matmul as matmul
    import nngraph as ng
    monkeypatch.setattr(entry, "GEMM_COLUMN_WORK", 1 << 12)
    monkeypatch.setattr(entry, "GEMM_WORK", 1 << 40)     # only own_threads splits it (not the pool's rule)
    monkeypatch.setattr(matmul, "BLAS_THREAD_WORK", 1 << 12)
    monkeypatch.setattr(entry, "N_THREADS", 3)
    # The product itself is under test: keep the layer on the channel-major product
    # rather than whatever layout this host's timing picks (the direct kernel has none).
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "batch")
    rng = np.random.default_rng(12)
    w = ng.parameter(rng.standard_normal((64, 8, 3, 3)).astype(np.float32), name="w")
    b = ng.parameter(rng.standard_normal((1, 64, 1, 1)).astype(np.float32), name="b")
    for batch in (1, 2):
        x = ng.placeholder((batch, 8, 30, 30), name="x")
        y = ng.relu(ng.conv2d(x, w, padding=1) + b)
        xv = rng.standard_normal((batch, 8, 30, 30)).astype(np.float32)
        fns = []        # compiled inside: the stand-in is linked in when the code is
        got, calls = _blas_thread_requests(lambda: fns.append(ng.compile([x], y, target="cpu")) or fns[0](xv))
        fn = fns[0]
        np.testing.assert_allclose(got, ng.compile([x], y, target="reference")(xv), rtol=1e-4, atol=1e-4)
        (kern,) = [k for k in fn.runner.program.schedule if isinstance(k, MatmulKernel)]
        assert kern.own_threads == (batch == 1)
        if batch == 1:
            assert 64 * 72 * 900 < entry.GEMM_WORK
            assert len({tid for tid, n in calls if n == 1}) == 3, calls   # each part on its own thread asked for one


def test_with_a_sequential_blas_our_threads_split_products_that_would_wake_a_second_blas_thread(monkeypatch):
    """Under a BLAS whose calls stay on one thread (MKL's sequential layer, or any BLAS
    where our worker pool splits the products: tuning.blas_call_threads) a product above
    the work that pays for a hand-off to our threads is split across them (else it runs
    on one core: MLP 784-512-256-10 inference b128 982 us, split 785 us); a BLAS that
    runs a call on two threads splits it itself below 32x the work that wakes one; an
    explicitly set GEMM_WORK (tests, tuning) is used as it is."""
    import codegen.llvm.entry as entry
    import codegen.llvm.matmul as matmul
    from codegen.llvm import blas
    from codegen.tuning import gemm_split_work, tuning
    monkeypatch.setattr(entry, "N_THREADS", 2)
    monkeypatch.setattr(blas, "threads_per_call", lambda: 1)
    lowered = gemm_split_work(tuning().blas_thread_work, tuning().own_split_work, 2, 1)
    assert entry.gemm_work() == lowered == tuning().own_split_work
    monkeypatch.setattr(blas, "threads_per_call", lambda: 2)
    assert entry.gemm_work() == gemm_split_work(tuning().blas_thread_work, tuning().own_split_work, 2, 2) > lowered
    monkeypatch.setattr(blas, "threads_per_call", lambda: 1)
    monkeypatch.setattr(matmul, "BLAS_THREAD_WORK", 1 << 12)
    rng = np.random.default_rng(21)
    m = max(2, -(-lowered // (96 * 80)))            # just above the lowered threshold
    a, b = rng.standard_normal((m, 80)), rng.standard_normal((80, 96))
    got, calls = _blas_thread_requests(lambda: _mm(a, b))
    np.testing.assert_allclose(got, a @ b, rtol=1e-10, atol=1e-10)
    assert len({tid for tid, n in calls if n == 1}) == 2, calls     # two parts, one BLAS thread each
    monkeypatch.setattr(entry, "GEMM_WORK", entry.GEMM_WORK * 2)   # set explicitly: no lowering
    assert entry.gemm_work() == entry.GEMM_WORK
