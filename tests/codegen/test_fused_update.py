"""A product with static rows and an epilogue runs the epilogue part by part on the
thread that computed the part (codegen/llvm/conv_gemm.py), not only a batch-1
convolution's: an SGD step's weight update W - lr * x^T g (the MLP step's largest
elementwise pass) split exactly as its product is, on one thread or three, rows
longer than columns (row parts) or columns longer than rows (column parts, in
chunks), with the values the reference computes."""
import numpy as np
import pytest

import nngraph as ng

LR = 0.01


def _sgd_update(monkeypatch, threads, rows, cols, batch=9):
    """W[rows, cols] - LR * x^T g, x: [N, rows], g: [N, cols], compiled for the cpu with
    `threads` threads that split small products too: (fn, W's new value, the reference's)."""
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "N_THREADS", threads)
    monkeypatch.setattr(entry, "THREAD_WORK", 1 << 8)
    monkeypatch.setattr(entry, "GEMM_WORK", 1 << 8)
    rng = np.random.default_rng(rows * 100 + cols)
    w0 = rng.standard_normal((rows, cols)).astype(np.float32)
    vals = (rng.standard_normal((batch, rows)).astype(np.float32),
            rng.standard_normal((batch, cols)).astype(np.float32))
    new = {}
    for target in ("cpu", "reference"):
        W = ng.parameter(w0.copy(), name="W")
        x, g = ng.placeholder(("N", rows), name="x"), ng.placeholder(("N", cols), name="g")
        fn = ng.compile([x, g], ng.sum(g), updates={W: W - LR * (x.T @ g)}, target=target)
        fn(*vals)
        new[target] = (fn, W.value)
    return new["cpu"][0], new["cpu"][1], new["reference"][1]


def _part_calls(fn) -> list:
    return [ln for ln in fn.dump("llvm").splitlines() if " call " in ln and "_fused_" in ln]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("rows, cols", [(37, 23), (23, 37), (64, 5)])
def test_update_runs_with_its_product_part_by_part(monkeypatch, threads, rows, cols):
    fn, got, want = _sgd_update(monkeypatch, threads, rows, cols)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    part = "fused_rows" if rows >= cols else "fused_cols"
    calls = _part_calls(fn)
    assert any(part in ln for ln in calls), calls
    assert "_epi(" not in fn.dump("llvm")                     # no launch of its own


def test_a_product_with_symbolic_rows_keeps_its_own_epilogue_launch(monkeypatch):
    """relu(x @ W + b) with x: [N, 8]: the rows are the batch, not known when the
    product is compiled, so the epilogue stays a launch of its own."""
    rng = np.random.default_rng(3)
    W = ng.parameter(rng.standard_normal((8, 6)).astype(np.float32), name="W")
    b = ng.parameter(rng.standard_normal(6).astype(np.float32), name="b")
    x = ng.placeholder(("N", 8), name="x")
    fn = ng.compile([x], ng.relu(x @ W + b), target="cpu")
    xv = rng.standard_normal((5, 8)).astype(np.float32)
    np.testing.assert_allclose(fn(xv), np.maximum(xv @ W.value + b.value, 0), rtol=1e-5, atol=1e-5)
    assert not _part_calls(fn) and "_epi(" in fn.dump("llvm")


@pytest.mark.parametrize("blas_threads, chunked", [(2, False), (1, True)])
def test_a_fused_product_run_as_one_part_keeps_every_blas_thread(monkeypatch, blas_threads, chunked):
    """Not split across our threads, a product not marked own_threads is one call over
    all its columns on every thread of a multi-threaded BLAS (OpenBLAS), as it was
    before its epilogue was fused: its column chunks would each run on one BLAS thread
    (matmul.py: a call narrower than the whole is a part). Under a one-thread BLAS
    (MKL's sequential layer) it still runs in chunks. The generated code's thread-count
    requests are recorded (test_matmul._blas_thread_requests)."""
    import codegen.llvm.conv_gemm as conv_gemm
    import codegen.llvm.entry as entry
    import codegen.llvm.matmul as matmul
    from codegen.llvm import blas
    from test_matmul import _blas_thread_requests
    monkeypatch.setattr(entry, "N_THREADS", 2)
    monkeypatch.setattr(entry, "GEMM_WORK", 1 << 40)          # never split across our threads
    monkeypatch.setattr(matmul, "BLAS_THREAD_WORK", 1 << 6)
    monkeypatch.setattr(conv_gemm, "chunk_columns", lambda rows, itemsize: 16)
    monkeypatch.setattr(blas, "threads_per_call", lambda: blas_threads)
    # a width per case: the compile cache's key has the real BLAS's threads, not the stand-in's
    rows, cols, batch = 8, 96 + 4 * blas_threads, 9
    rng = np.random.default_rng(4)
    w0 = rng.standard_normal((rows, cols)).astype(np.float32)
    x, g = rng.standard_normal((batch, rows)).astype(np.float32), rng.standard_normal((batch, cols)).astype(np.float32)
    W = ng.parameter(w0.copy(), name="W")
    xp, gp = ng.placeholder(("N", rows), name="x"), ng.placeholder(("N", cols), name="g")
    fn, calls = _blas_thread_requests(lambda: _run_update(W, xp, gp, x, g))
    np.testing.assert_allclose(W.value, w0 - LR * (x.T @ g), rtol=1e-5, atol=1e-5)
    assert any("fused_cols" in ln for ln in _part_calls(fn))
    assert any(n == 1 for _, n in calls) == chunked, calls


def _run_update(W, xp, gp, x, g):
    fn = ng.compile([xp, gp], ng.sum(gp), updates={W: W - LR * (xp.T @ gp)}, target="cpu")
    fn(x, g)
    return fn
