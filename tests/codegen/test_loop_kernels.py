"""Loop kernels (map and reduce stages, broadcasting and transposed index maps,
masked loads, RNG) compiled to native code, against NumPy; threading; asm."""
import numpy as np
import pytest

from nngraph.ops.random import _ref as uniform_ref
from passes.program import LoopKernel, Stage, Store
from progbuild import Dim, ProgBuilder, pointwise

N, M = Dim("N"), Dim("M")


def _rowwise(kind, dtype, x):
    """reduce over axis 1 of a [N, M] input into out[N]."""
    pb = ProgBuilder()
    xi = pb.buf("x", dtype, (N, M), "input")
    out_dt = "int64" if kind == "argmax" else dtype
    y = pb.buf("y", out_dt, (N,), "output")
    b = pb.body()
    i, j = b.idx(0), b.idx(1)
    v = b.load(xi, i, j)
    red = (kind, v, j) if kind == "argmax" else (kind, v)
    s0 = Stage((M,), b.ins, (red,), [])
    e = pb.body()
    i2 = e.idx(0)
    r = e("result", dtype=out_dt, stage=0, slot=0)
    s1 = Stage((), e.ins, (), [Store(y, (i2,), r)])
    pb.kernel(LoopKernel("reduce", (N,), [s0, s1]))
    (out,), _ = pb.run([x], env={"N": x.shape[0], "M": x.shape[1]})
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("kind", ["sum", "max", "min", "argmax"])
@pytest.mark.parametrize("shape", [(3, 1000), (7, 1), (5, 0), (0, 4), (2, 37)])
def test_row_reductions(kind, dtype, shape):
    rng = np.random.default_rng(4)
    if dtype.startswith("int"):
        x = rng.integers(-100, 100, shape).astype(dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
    if shape[1] == 0 and kind == "argmax":
        pytest.skip("argmax of an empty row is an error in NumPy")
    got = _rowwise(kind, dtype, x)
    ref = {"sum": lambda a: a.sum(1), "max": lambda a: a.max(1, initial=-np.inf if dtype.startswith("f") else np.iinfo(dtype).min),
           "min": lambda a: a.min(1, initial=np.inf if dtype.startswith("f") else np.iinfo(dtype).max),
           "argmax": lambda a: a.argmax(1)}[kind]
    want = ref(x.astype(np.float64) if kind == "sum" and dtype.startswith("f") else x)
    if kind == "sum" and dtype.startswith("f"):
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, np.asarray(want).astype(got.dtype))


def test_max_and_argmax_follow_numpy_on_nan_and_ties():
    x = np.array([[1, 3, 3, 2], [np.nan, 5, np.nan, 1], [-np.inf, -np.inf, -np.inf, -np.inf], [2, np.nan, 9, 9]],
                 dtype=np.float32)
    np.testing.assert_array_equal(_rowwise("argmax", "float32", x), x.argmax(1))
    np.testing.assert_array_equal(_rowwise("max", "float32", x), x.max(1))
    np.testing.assert_array_equal(_rowwise("min", "float32", x), x.min(1))


def test_softmax_three_stages_in_one_kernel():
    """reduce(max), reduce(sum exp(x - m)), map(exp(x - m) / s) over each row."""
    x = (np.random.default_rng(5).standard_normal((33, 1000)) * 30).astype(np.float32)
    pb = ProgBuilder()
    xi = pb.buf("x", "float32", (N, M), "input")
    y = pb.buf("y", "float32", (N, M), "output")
    b0 = pb.body()
    v = b0.load(xi, b0.idx(0), b0.idx(1))
    b1 = pb.body()
    m = b1("result", stage=0, slot=0)
    e = b1("exp", b1("sub", b1.load(xi, b1.idx(0), b1.idx(1)), m))
    b2 = pb.body()
    i, j = b2.idx(0), b2.idx(1)
    m2 = b2("result", stage=0, slot=0)
    s2 = b2("result", stage=1, slot=0)
    out = b2("div", b2("exp", b2("sub", b2.load(xi, i, j), m2)), s2)
    pb.kernel(LoopKernel("softmax", (N,), [Stage((M,), b0.ins, (("max", v),)), Stage((M,), b1.ins, (("sum", e),)),
                                            Stage((M,), b2.ins, (), [Store(y, (i, j), out)])]))
    (got,), _ = pb.run([x], env={"N": 33, "M": 1000})
    x64 = x.astype(np.float64)
    want = np.exp(x64 - x64.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-9)


def test_broadcast_and_transposed_index_maps():
    """y[i, j] = a[j, i] * b[j] + c (c a 0-d param): transposes and broadcasts are
    index arithmetic, no copies."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((64, 50)).astype(np.float32)
    bv = rng.standard_normal(64).astype(np.float32)
    c = np.array(1.5, np.float32)
    pb = ProgBuilder()
    ai = pb.buf("a", "float32", (M, N), "input")
    bi = pb.buf("b", "float32", (M,), "input")
    ci = pb.buf("c", "float32", (), "param")
    y = pb.buf("y", "float32", (N, M), "output")
    b = pb.body()
    i, j = b.idx(0), b.idx(1)
    v = b("add", b("mul", b.load(ai, j, i), b.load(bi, j)), b.load(ci))
    pointwise(pb, y, (N, M), b, v)
    (got,), _ = pb.run([a, bv], [c], env={"N": 50, "M": 64})
    np.testing.assert_allclose(got, a.T * bv + c, rtol=1e-6)


def test_masked_load_pads_without_touching_memory():
    """y[i] = x[i - 2] if 0 <= i - 2 < n else -1 over n + 4 points."""
    x = np.arange(1, 8, dtype=np.float64)
    pb = ProgBuilder()
    xi = pb.buf("x", "float64", (N,), "input")
    y = pb.buf("y", "float64", (7 + 4,), "output")
    b = pb.body()
    i = b.idx(0)
    k = b("sub", i, b("const", dtype="int64", value=2), dtype="int64")
    ok = b("logical_and", b("greater_equal", k, b("const", dtype="int64", value=0), dtype="bool"),
           b("less", k, b("size", dtype="int64", size=N), dtype="bool"), dtype="bool")
    v = b.load(xi, k, mask=ok, fill=-1.0)
    pointwise(pb, y, (11,), b, v)
    (got,), _ = pb.run([x], env={"N": 7})
    np.testing.assert_array_equal(got, np.pad(x, 2, constant_values=-1.0))


@pytest.mark.parametrize("counter_dtype", ["int64", "int32"])
def test_uniform_is_bit_identical_to_the_reference(counter_dtype):
    class Ctx:
        out_shape = (37, 129)
        attrs = {"seed": 12345}
    counter = np.array(987654321 if counter_dtype == "int64" else 77, dtype=counter_dtype)
    want = uniform_ref(Ctx, counter)
    pb = ProgBuilder()
    ci = pb.buf("counter", counter_dtype, (), "param")
    y = pb.buf("u", "float32", (37, 129), "output")
    b = pb.body()
    i, j = b.idx(0), b.idx(1)
    flat = b("add", b("mul", i, b("const", dtype="int64", value=129), dtype="int64"), j, dtype="int64")
    u = b("uniform", b.load(ci), flat, seed=12345)
    pointwise(pb, y, (37, 129), b, u)
    (got,), _ = pb.run([], [counter])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def _ew_program(dtype="float32"):
    pb = ProgBuilder()
    xi = pb.buf("x", dtype, (N, M), "input")
    y = pb.buf("y", dtype, (N, M), "output")
    b = pb.body()
    i, j = b.idx(0), b.idx(1)
    x = b.load(xi, i, j)
    v = b("mul", b("tanh", b("add", b("mul", x, b("const", dtype=dtype, value=0.5), dtype=dtype),
                             b("const", dtype=dtype, value=0.1), dtype=dtype), dtype=dtype),
          b("sigmoid", x, dtype=dtype), dtype=dtype)
    pointwise(pb, y, (N, M), b, v)
    return pb


def test_elementwise_kernel_is_vectorised():
    runner, stages = _ew_program().build()
    asm = stages["asm"]()
    assert "ymm" in asm or "zmm" in asm, "no vector registers in the elementwise kernel's assembly"
    assert "define" in stages["llvm"]() and "nngraph_entry" in stages["llvm"]()


@pytest.mark.parametrize("n", [0, 1, 7, 1000, 3000])
def test_one_compiled_program_runs_every_size(n):
    """Dynamic sizes are arguments; big sizes split across two threads."""
    runner, _ = _ew_program().build()
    for rows in (n, 3):
        x = np.random.default_rng(n).standard_normal((rows, 400)).astype(np.float32)
        (got,), _ = runner.run([x], [], {"N": rows, "M": 400})
        x64 = x.astype(np.float64)
        want = np.tanh(x64 * 0.5 + 0.1) / (1 + np.exp(-x64))
        np.testing.assert_allclose(got, want, rtol=3e-6, atol=1e-7)


@pytest.mark.parametrize("n_threads", [2, 3, 5])
def test_threaded_split_matches_single_thread(n_threads, monkeypatch):
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "N_THREADS", n_threads)
    monkeypatch.setattr(entry, "THREAD_WORK", 1 << 12)
    pb = _ew_program("float64")
    from codegen.llvm import compile_program
    from runtime.cpu import CpuRunner
    x = np.random.default_rng(9).standard_normal((1001, 999))
    res = []
    for threads in (True, False):
        c = compile_program(pb.program(), threads=threads)
        assert ("nngraph_pthread_create" in c.ir_text) == threads
        (out,), _ = CpuRunner(pb.program(), c).run([x], [], {"N": 1001, "M": 999})
        res.append(out)
    np.testing.assert_array_equal(res[0], res[1])


@pytest.mark.parametrize("n_threads, work", [(2, 1 << 12), (7, 1 << 12), (7, 1 << 19)])
@pytest.mark.parametrize("n", [5, 1 << 20])
def test_full_reduction_splits_into_partials(n, n_threads, work, monkeypatch):
    """outer = (): a big sum/max/min is cut into one range per thread (about one per
    THREAD_WORK units of work, at most N_THREADS; ranges may be empty and unused
    partial slots hold the identity), the partials combined, then the epilogue stage
    runs once."""
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "N_THREADS", n_threads)
    monkeypatch.setattr(entry, "THREAD_WORK", work)     # so 1 << 20 elements split
    from codegen.llvm import compile_program
    from runtime.cpu import CpuRunner
    x = np.random.default_rng(11).standard_normal(n) + 100     # all positive: a partial slot
    x[n // 3] = 150.0                                            # left at 0 would show in min
    pb = ProgBuilder()
    xi = pb.buf("x", "float64", (N,), "input")
    out = pb.buf("out", "float64", (3,), "output")
    b = pb.body()
    v = b.load(xi, b.idx(0))
    e = pb.body()
    r = [e("result", dtype="float64", stage=0, slot=j) for j in range(3)]
    c = [e("const", dtype="int64", value=j) for j in range(3)]
    pb.kernel(LoopKernel("stats", (), [Stage((N,), b.ins, (("sum", v), ("max", v), ("min", v))),
                                       Stage((), e.ins, (), [Store(out, (c[j],), r[j]) for j in range(3)])]))
    c_split = compile_program(pb.program())
    assert "_part" in c_split.ir_text
    (got,), _ = CpuRunner(pb.program(), c_split).run([x], [], {"N": n})
    np.testing.assert_allclose(got[0], x.sum(), rtol=1e-12)
    assert got[1] == x.max() and got[2] == x.min()


def test_thread_count_follows_the_environment(monkeypatch):
    import codegen.llvm.entry as entry
    monkeypatch.setenv("NNGRAPH_NUM_THREADS", "3")
    assert entry._thread_count() == 3
    monkeypatch.setenv("NNGRAPH_NUM_THREADS", "three")
    with pytest.raises(ValueError, match="NNGRAPH_NUM_THREADS"):
        entry._thread_count()
    monkeypatch.delenv("NNGRAPH_NUM_THREADS")
    assert entry._thread_count() >= 1


def _channel_sum_program(transposed_w=False, use_h_in_value=False):
    """out[c] = sum over (n, h, w) of x[n, c, h, w] (* h): a reduction over short rows."""
    pb = ProgBuilder()
    xi = pb.buf("x", "float32", (N, 3, 4, 5), "input")
    y = pb.buf("y", "float32", (3,), "output")
    b = pb.body()
    c, n, h, w = b.idx(0), b.idx(1), b.idx(2), b.idx(3)
    v = b.load(xi, n, c, w, h) if transposed_w else b.load(xi, n, c, h, w)
    if use_h_in_value:
        v = b("mul", v, b("cast", h, dtype="float32"))
    s0 = Stage((N, 4, 5) if not transposed_w else (N, 5, 4), b.ins, (("sum", v),), [])
    e = pb.body()
    s1 = Stage((), e.ins, (), [Store(y, (e.idx(0),), e("result", stage=0, slot=0))])
    pb.kernel(LoopKernel("chsum", (3,), [s0, s1]))
    return pb


@pytest.mark.parametrize("variant", [{}, {"transposed_w": True}, {"use_h_in_value": True}])
def test_coalesced_short_rows_give_the_same_results(variant):
    from passes.coalesce import coalesce
    pb = _channel_sum_program(**variant)
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32)
    kern = pb.schedule[0]
    outer, stages = coalesce(pb.program(), kern.outer, kern.stages)
    merged = stages[0].inner == (N, 20)
    assert merged == (not variant)      # h used in the value, or (w, h) not adjacent: no merge
    (out,), _ = pb.run([x], env={"N": 2})
    xs = x * np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1) if variant.get("use_h_in_value") else x
    np.testing.assert_allclose(out, xs.sum((0, 2, 3)), rtol=1e-5)
