"""Products with one output row or one output column call BLAS gemv (codegen/llvm/gemv.py)
instead of gemm: values against NumPy for every transpose, alpha/beta, batch axes of
size one and parts split across threads, for every BLAS candidate installed; the
code calls gemv (a recording stand-in, and the LLVM dump); a symbolic or zero k keeps
gemm; a library whose gemv computes wrong is refused."""
import ctypes

import numpy as np
import pytest

from passes.program import LoopKernel, MatmulKernel, Stage, Store
from progbuild import Dim, ProgBuilder

pytestmark = pytest.mark.usefixtures("blas_candidate")


@pytest.fixture(autouse=True)
def gemv_from_any_size(request, monkeypatch):
    """The small matrices of these tests call gemv too (gemv_min_bytes: 0), except in
    the test of the size rule itself."""
    if "keeps_gemm_below_l1" not in request.node.name:
        import codegen.llvm.gemv as gemv
        monkeypatch.setattr(gemv, "gemv_min_bytes", lambda: 0)


def _vm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c0=None, batch=(), env=None, k_dim=None):
    """One MatmulKernel over a and b (a hand-built Program), its output."""
    dt = a.dtype.name
    pb = ProgBuilder()
    m = a.shape[-1] if trans_a else a.shape[-2]
    k = a.shape[-2] if trans_a else a.shape[-1]
    n = b.shape[-2] if trans_b else b.shape[-1]
    a_shape, b_shape = a.shape, b.shape
    if k_dim is not None:       # k symbolic: the same arrays, k bound at run time
        a_shape = tuple(k_dim if s == k else s for s in a.shape)
        b_shape = tuple(k_dim if s == k else s for s in b.shape)
        k = k_dim
    ai = pb.buf("a", dt, a_shape, "input")
    bi = pb.buf("b", dt, b_shape, "input")
    out_shape = tuple(batch) + (m, n)
    if c0 is not None:
        ci = pb.buf("c", dt, out_shape, "param")
        out = pb.update(ci)
        cb = pb.body()
        idx = tuple(cb.idx(d) for d in range(len(out_shape)))
        pb.kernel(LoopKernel("init", out_shape, [Stage((), cb.ins, (), [Store(out, idx, cb.load(ci, *idx))])]))
    else:
        out = pb.buf("out", dt, out_shape, "output")
    pb.kernel(MatmulKernel("mm", ai, bi, out, tuple(batch), m, n, k, trans_a, trans_b, alpha, beta))
    runner, _ = pb.build()
    outs, new = runner.run([a, b], [c0] if c0 is not None else [], env or {})
    return (new or outs)[0], runner


def _ref(a, b, trans_a, trans_b):
    A = np.swapaxes(a, -1, -2) if trans_a else a
    B = np.swapaxes(b, -1, -2) if trans_b else b
    return np.matmul(A.astype(np.float64), B.astype(np.float64))


def _operands(rng, side, m, k, n, trans_a, trans_b, dtype):
    m, n = (1, n) if side == "row" else (m, 1)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("side", ["row", "column"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_vector_products_match_numpy(dtype, side, trans_a, trans_b):
    rng = np.random.default_rng(0)
    a, b = _operands(rng, side, 37, 19, 23, trans_a, trans_b, dtype)
    got, _ = _vm(a, b, trans_a, trans_b)
    np.testing.assert_allclose(got, _ref(a, b, trans_a, trans_b), **_tol(dtype))


@pytest.mark.parametrize("side", ["row", "column"])
def test_alpha_and_beta_accumulate(side):
    """W_new = 0.5 W - 0.25 op(a) op(b), as an SGD-like update of a vector parameter."""
    rng = np.random.default_rng(1)
    a, b = _operands(rng, side, 29, 31, 17, False, True, "float64")
    c0 = rng.standard_normal((a.shape[0], b.shape[0]))
    got, _ = _vm(a, b, trans_b=True, alpha=-0.25, beta=0.5, c0=c0)
    np.testing.assert_allclose(got, 0.5 * c0 - 0.25 * _ref(a, b, False, True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("side", ["row", "column"])
def test_batch_axes_of_size_one(side):
    rng = np.random.default_rng(2)
    a, b = _operands(rng, side, 13, 11, 9, False, False, "float32")
    got, _ = _vm(a[None], b[None], batch=(1,))
    np.testing.assert_allclose(got, _ref(a, b, False, False)[None], **_tol("float32"))


@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("side", ["row", "column"])
@pytest.mark.parametrize("trans", [False, True])
def test_parts_split_across_threads(side, trans, n_threads, monkeypatch):
    """Split along the long output axis (one row: its columns; one column: its rows),
    each part its own gemv on its slice of the matrix."""
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "GEMM_WORK", 1 << 10)
    monkeypatch.setattr(entry, "GEMM_COLUMN_WORK", 1 << 10)
    monkeypatch.setattr(entry, "N_THREADS", n_threads)
    rng = np.random.default_rng(3)
    a, b = _operands(rng, side, 301, 67, 299, trans and side == "column", trans and side == "row", "float64")
    ta, tb = trans and side == "column", trans and side == "row"
    got, _ = _vm(a, b, ta, tb)
    np.testing.assert_allclose(got, _ref(a, b, ta, tb), rtol=1e-12, atol=1e-12)


def _recording(blas_candidate, name, proto):
    from codegen.llvm import blas
    addresses = blas.candidate_addresses(blas_candidate)
    real = proto(addresses[name])
    calls = []

    @proto
    def record(*args):
        calls.append(name)
        real(*args)
    return addresses, record, calls


def test_one_row_calls_gemv_not_gemm(blas_candidate):
    """Recording stand-ins for sgemm and sgemv: a 1 x k @ k x n product calls sgemv
    once, a 2-row one sgemm."""
    from codegen.llvm.blas_call import GEMM_TYPE, GEMV_TYPE
    from codegen.llvm.target import register_blas
    addresses, rec_gemv, calls = _recording(blas_candidate, "sgemv", GEMV_TYPE)
    _, rec_gemm, gemm_calls = _recording(blas_candidate, "sgemm", GEMM_TYPE)
    register_blas(dict(addresses, sgemv=ctypes.cast(rec_gemv, ctypes.c_void_p).value,
                       sgemm=ctypes.cast(rec_gemm, ctypes.c_void_p).value))
    try:
        rng = np.random.default_rng(4)
        b = rng.standard_normal((40, 30)).astype(np.float32)
        for rows in (1, 2):
            a = rng.standard_normal((rows, 40)).astype(np.float32)
            got, _ = _vm(a, b)
            np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-5)
    finally:
        register_blas(addresses)
    assert calls == ["sgemv"] and gemm_calls == ["sgemm"]


def test_symbolic_or_zero_k_keeps_gemm():
    """gemv returns without writing y when k is 0 (gemm scales C by beta), so a k that
    may be 0 keeps gemm: the output is beta * C, here zeros."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((1, 6)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    K = Dim("K")
    got, runner = _vm(a, b, k_dim=K, env={"K": 6})
    np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-5)
    assert "nngraph_sgemv" not in runner.compiled.llvm_text()
    (empty,), _ = runner.run([a[:, :0].copy(), b[:0].copy()], [], {"K": 0})
    np.testing.assert_array_equal(empty, np.zeros((1, 5), np.float32))


def test_the_llvm_dump_shows_gemv_for_a_dense_layer_at_batch_one():
    """x[1, 64] @ W[64, 10] + bias compiled with ng.compile: the LLVM dump calls
    nngraph_sgemv, and at batch 2 nngraph_sgemm; values as target="reference"."""
    import nngraph as ng
    rng = np.random.default_rng(6)
    w = ng.parameter(rng.standard_normal((64, 10)).astype(np.float32), name="w")
    bias = ng.parameter(rng.standard_normal(10).astype(np.float32), name="bias")
    for batch, routine in ((1, "nngraph_sgemv"), (2, "nngraph_sgemm")):
        x = ng.placeholder((batch, 64), name="x")
        y = ng.relu(ng.matmul(x, w) + bias)
        fn = ng.compile([x], y, target="cpu")
        xv = rng.standard_normal((batch, 64)).astype(np.float32)
        np.testing.assert_allclose(fn(xv), ng.compile([x], y, target="reference")(xv), rtol=1e-5, atol=1e-5)
        llvm = fn.dump("llvm")
        assert f"call void @{routine}(" in llvm
        assert ("nngraph_sgemm" in llvm) == (batch == 2)


def test_a_library_whose_gemv_is_wrong_is_refused(blas_candidate):
    """wrong_product checks gemv too: single precision's gemv standing in for double's
    computes wrong, and is named."""
    from codegen.llvm import blas
    from codegen.llvm.blas_call import wrong_product
    addresses = blas.candidate_addresses(blas_candidate)
    assert wrong_product(addresses) is None
    wrong = wrong_product(dict(addresses, dgemv=addresses["sgemv"]))
    assert wrong is not None and "float64 matrix-vector" in wrong


def test_a_matrix_within_l1_keeps_gemm_below_l1():
    """gemv from a matrix of the host's L1 data cache on (gemv_min_bytes): a 1 x 16 @
    16 x 8 product stays a gemm, a 1 x k @ k x n one over L1 calls gemv."""
    from codegen.host import host_facts
    from codegen.llvm.gemv import gemv_min_bytes
    assert gemv_min_bytes() == host_facts().l1d
    rng = np.random.default_rng(7)
    k = 64
    n = gemv_min_bytes() // (4 * k) + 1
    for cols, routine in ((8, "nngraph_sgemm"), (n, "nngraph_sgemv")):
        a = rng.standard_normal((1, k)).astype(np.float32)
        b = rng.standard_normal((k, cols)).astype(np.float32)
        got, runner = _vm(a, b)
        np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-5)
        llvm = runner.compiled.llvm_text()
        assert f"call void @{routine}(" in llvm and ("nngraph_sgemv" in llvm) == (cols == n)
