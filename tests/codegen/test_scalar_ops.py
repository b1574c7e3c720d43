"""Every scalar op of the body language, compiled to native code, against NumPy
(the op's reference from nngraph/ops/elementwise.py), with special values."""
import numpy as np
import pytest

from nngraph.ops.elementwise import BINARY_REFS, UNARY_REFS
from progbuild import Dim, ProgBuilder, pointwise

N = Dim("N")

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1e-3, -1e-3, 1e-30, -1e-30, 3.0, -3.0, 10.0, -10.0, 20.0, -20.0,
           40.0, -40.0, 88.0, -88.0, 89.0, -104.0, 700.0, -700.0, 750.0, -750.0, 1e30, -1e30,
           np.inf, -np.inf, np.nan]


def _inputs(dtype, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.standard_normal(n) * 3, rng.uniform(-30, 30, n), np.exp(rng.uniform(-80, 80, n)),
                        np.array(SPECIAL)]).astype(dtype)
    if dtype == "float32":
        x = np.concatenate([x, np.array([1e-40, -1e-40, 1.2e-38], dtype)])
    else:
        x = np.concatenate([x, np.array([1e-310, -1e-310, 2.3e-308], dtype)])
    return x


def _unary(op, dtype, x):
    pb = ProgBuilder()
    xi = pb.buf("x", dtype, (N,), "input")
    y = pb.buf("y", dtype, (N,), "output")
    b = pb.body()
    i = b.idx(0)
    v = b(op, b.load(xi, i, dtype=dtype), dtype=dtype)
    pointwise(pb, y, (N,), b, v)
    (out,), _ = pb.run([x], env={"N": x.size})
    return out


def _ulps(got, want, dtype):
    """Error in units of the last place of the correctly rounded result."""
    with np.errstate(all="ignore"):
        w = want.astype(dtype)
        sp = np.spacing(np.abs(w).astype(dtype)).astype(np.float64)
        sp = np.maximum(sp, np.finfo(dtype).smallest_subnormal)
        both = (np.isnan(got) & np.isnan(w)) | (got == w)
        err = np.where(both, 0.0, np.abs(got.astype(np.float64) - want) / sp)
    return np.nan_to_num(err, nan=np.inf)


ACCURATE = ["exp", "expm1", "log", "log1p", "tanh", "sigmoid", "softplus", "sqrt", "rsqrt", "sin", "cos"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", ACCURATE)
def test_transcendental_within_a_few_ulp(op, dtype):
    x = _inputs(dtype)
    if op in ("sin", "cos"):
        x = x[np.abs(x) < 1e4]
    got = _unary(op, dtype, x)
    with np.errstate(all="ignore"):
        # truth: the reference in float64 (float32 inputs) or longdouble (float64 inputs)
        wide = np.float64 if dtype == "float32" else np.longdouble
        want = np.asarray(UNARY_REFS[op](x.astype(wide)), dtype=wide).astype(np.float64)
        numpy_native = np.asarray(UNARY_REFS[op](x)).astype(dtype)
    err = _ulps(got, want, dtype)
    bad = np.argmax(err)
    assert err.max() <= 4, f"{op} {dtype}: {err.max():.1f} ulp at x={x[bad]!r}: got {got[bad]!r}, want {want[bad]!r}"
    # and matches NumPy's own result on every special value's class (nan/inf/finite)
    assert np.array_equal(np.isnan(got), np.isnan(numpy_native))
    assert np.array_equal(np.isinf(got), np.isinf(numpy_native))


EXACT_UNARY = ["neg", "abs", "sign", "relu", "step"]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("op", EXACT_UNARY)
def test_exact_unary_ops(op, dtype):
    if dtype.startswith("int"):
        x = np.random.default_rng(1).integers(-1000, 1000, 500).astype(dtype)
        x[:3] = [0, np.iinfo(dtype).min, np.iinfo(dtype).max]
    else:
        x = _inputs(dtype, 200)
    got = _unary(op, dtype, x)
    with np.errstate(all="ignore"):
        want = np.asarray(UNARY_REFS[op](x)).astype(dtype)
    np.testing.assert_array_equal(got, want)


def _binary(op, dt_a, dt_b, out_dt, a, b_):
    pb = ProgBuilder()
    ai = pb.buf("a", dt_a, (N,), "input")
    bi = pb.buf("b", dt_b, (N,), "input")
    y = pb.buf("y", out_dt, (N,), "output")
    b = pb.body()
    i = b.idx(0)
    v = b(op, b.load(ai, i), b.load(bi, i), dtype=out_dt)
    pointwise(pb, y, (N,), b, v)
    (out,), _ = pb.run([a, b_], env={"N": a.size})
    return out


ARITH = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]
COMPARE = ["less", "less_equal", "greater", "greater_equal", "equal", "not_equal"]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("op", ARITH + COMPARE)
def test_binary_ops(op, dtype):
    rng = np.random.default_rng(2)
    isf = dtype.startswith("float")
    if op == "pow" and not isf:
        pytest.skip("pow is float-only")
    if isf:
        a = np.concatenate([rng.standard_normal(300) * 4, [np.nan, 1.0, np.inf, -np.inf, 0.0, -0.0, 2.0]]).astype(dtype)
        b = np.concatenate([rng.standard_normal(300) * 4, [1.0, np.nan, np.inf, 1.0, -0.0, 0.0, 2.0]]).astype(dtype)
        if op == "pow":
            a = np.abs(a)
    else:
        a = rng.integers(-50, 50, 307).astype(dtype)
        b = rng.integers(-50, 50, 307).astype(dtype)
        b[b == 0] = 3
        b[:5] = a[:5]
    out_dt = "bool" if op in COMPARE else ("float32" if op == "div" and not isf else dtype)
    got = _binary(op, dtype, dtype, out_dt, a, b)
    with np.errstate(all="ignore"):
        if op in COMPARE:
            want = BINARY_REFS[op](a, b)
        else:
            want = np.asarray(BINARY_REFS[op](a.astype(out_dt), b.astype(out_dt))).astype(out_dt)
    if op == "pow":
        np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps)
    else:
        np.testing.assert_array_equal(got, want)


def test_mixed_dtypes_promote_like_numpy():
    a = np.arange(-5, 5, dtype=np.int32)
    b = np.linspace(-2, 2, 10).astype(np.float64)
    np.testing.assert_array_equal(_binary("add", "int32", "float64", "float64", a, b), a + b)
    np.testing.assert_array_equal(_binary("less", "int32", "float64", "bool", a, b), a < b)


@pytest.mark.parametrize("op", ["floordiv", "mod"])
def test_integer_floor_division(op):
    a = np.arange(-20, 20, dtype=np.int64)
    b = np.full(40, 7, dtype=np.int64)
    got = _binary(op, "int64", "int64", "int64", a, b)
    np.testing.assert_array_equal(got, a // 7 if op == "floordiv" else a % 7)


def test_logical_where_and_casts():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(100) * 1e3, [np.nan, np.inf, -np.inf, 0.5, -0.5, 3e9, -3e9]]).astype(np.float32)
    n = x.size
    pb = ProgBuilder()
    xi = pb.buf("x", "float32", (N,), "input")
    outs = {name: pb.buf(name, dt, (N,), "output") for name, dt in
            [("i32", "int32"), ("i64", "int64"), ("b", "bool"), ("f64", "float64"), ("w", "float32"),
             ("nb", "bool"), ("andor", "bool"), ("bf", "float32")]}
    b = pb.body()
    i = b.idx(0)
    v = b.load(xi, i)
    finite = b("less", b("abs", v), b("const", value=1e9), dtype="bool")
    vs = {"i32": b("cast", b("where", finite, v, b("const", value=0.0)), dtype="int32"),
          "i64": b("cast", b("where", finite, v, b("const", value=0.0)), dtype="int64"),
          "b": b("cast", v, dtype="bool"),
          "f64": b("cast", v, dtype="float64"),
          "w": b("where", b("greater", v, b("const", value=0.0), dtype="bool"), v, b("neg", v)),
          "nb": b("logical_not", b("cast", v, dtype="bool"), dtype="bool")}
    gt = b("greater", v, b("const", value=1.0), dtype="bool")
    vs["andor"] = b("logical_or", b("logical_and", gt, finite, dtype="bool"), b("logical_not", finite, dtype="bool"), dtype="bool")
    vs["bf"] = b("cast", gt, dtype="float32")
    from passes.program import LoopKernel, Stage, Store
    pb.kernel(LoopKernel("casts", (N,), [Stage((), b.ins, (), [Store(outs[k], (i,), vs[k]) for k in outs])]))
    got, _ = pb.run([x], env={"N": n})
    got = dict(zip(outs, got))
    fin = np.abs(x) < 1e9
    safe = np.where(fin, x, 0)
    np.testing.assert_array_equal(got["i32"], safe.astype(np.int32))
    np.testing.assert_array_equal(got["i64"], safe.astype(np.int64))
    np.testing.assert_array_equal(got["b"], x.astype(bool))
    np.testing.assert_array_equal(got["f64"], x.astype(np.float64))
    np.testing.assert_array_equal(got["w"], np.where(x > 0, x, -x))
    np.testing.assert_array_equal(got["nb"], ~x.astype(bool))
    np.testing.assert_array_equal(got["andor"], ((x > 1) & fin) | ~fin)
    np.testing.assert_array_equal(got["bf"], (x > 1).astype(np.float32))


def _dense_f32(n=150_000, seed=3):
    """A dense float32 sample of the ranges where exp, tanh and sigmoid change most:
    near 0, the bends, the ends of exp's range, tiny and huge magnitudes."""
    rng = np.random.default_rng(seed)
    tiny = np.exp(rng.uniform(-90, 5, n)) * rng.choice([-1.0, 1.0], n)
    return np.concatenate([rng.uniform(-1, 1, n), rng.uniform(-12, 12, n), rng.uniform(-110, 90, n), tiny,
                           np.linspace(-0.5, 0.5, n)]).astype(np.float32)


@pytest.mark.parametrize("op", ["exp", "expm1", "tanh", "sigmoid", "softplus"])
def test_f32_exp_family_within_3_ulp_on_a_dense_sample(op):
    """The minimax polynomials (mathfns.EXP_F32, EXPM1_F32) and, with AVX-512, the
    division by reciprocal estimate and one Newton step keep these within 3 ulp
    (measured: 1.0, 1.6, 2.6, 2.5, 2.7) on 750k points."""
    x = _dense_f32()
    got = _unary(op, "float32", x)
    with np.errstate(all="ignore"):
        want = np.asarray(UNARY_REFS[op](x.astype(np.float64)), dtype=np.float64)
    err = _ulps(got, want, "float32")
    bad = np.argmax(err)
    assert err.max() <= 3, f"{op}: {err.max():.2f} ulp at x={x[bad]!r}: got {got[bad]!r}, want {want[bad]!r}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tanh_and_sigmoid_saturate_and_never_pass_one(dtype):
    """Where the correctly rounded tanh is +-1 and sigmoid 1, these are within one ulp
    of it (exactly it but in the remainder of a loop, where AVX-512's vector tail
    divides by a 12-bit estimate and one Newton step: 1 - 2**-24), and nowhere above
    1 in magnitude (a gradient 1 - t*t never negative)."""
    x = np.concatenate([np.linspace(5, 60, 20001), -np.linspace(5, 60, 20001), _dense_f32(5000)]).astype(dtype)
    xd = x.astype(np.float64)
    for op, want in (("tanh", np.tanh(xd)), ("sigmoid", 0.5 * (1 + np.tanh(xd / 2)))):
        got = _unary(op, dtype, x)
        rounded = want.astype(dtype)
        sat = np.abs(rounded) == 1
        assert sat.sum() > 1000
        np.testing.assert_allclose(got[sat], rounded[sat], rtol=np.finfo(dtype).epsneg, atol=0, err_msg=op)
        assert np.all(np.abs(got) <= 1), op


@pytest.mark.parametrize("op", ["exp", "expm1", "tanh", "sigmoid", "softplus"])
def test_f32_remainder_lanes_within_4_ulp(op):
    """Arrays shorter than one interleaved vector iteration run entirely in the loops
    LLVM adds for a remainder (narrower vectors, then scalars), whose code differs
    from the main loop's (with AVX-512: vrcpps instead of vrcp14ps): they keep the
    4-ulp budget too."""
    import nngraph as ng
    xs = _dense_f32(20_000, seed=9)
    u = ng.placeholder(("N",), name="u")
    fn = ng.compile([u], getattr(ng, op)(u), target="cpu")
    for n in (4, 7, 8, 12, 15, 31, 63):
        chunks = [xs[i:i + n] for i in range(0, xs.size - n, n)]
        got = np.concatenate([fn(c) for c in chunks])
        x = np.concatenate(chunks)
        with np.errstate(all="ignore"):
            want = np.asarray(UNARY_REFS[op](x.astype(np.float64)), dtype=np.float64)
        err = _ulps(got, want, "float32")
        bad = np.argmax(err)
        assert err.max() <= 4, f"{op} n={n}: {err.max():.2f} ulp at x={x[bad]!r}: got {got[bad]!r}, want {want[bad]!r}"


def _product_plus_constant(kind, x, c):
    """x * x0 + c (kind "add") or c - x * x (kind "sub") in one compiled body."""
    pb = ProgBuilder()
    xi = pb.buf("x", "float32", (N,), "input")
    y = pb.buf("y", "float32", (N,), "output")
    b = pb.body()
    v = b.load(xi, b.idx(0))
    if kind == "add":
        out = b("add", b("mul", v, b("const", value=0.7), dtype="float32"), b("const", value=c), dtype="float32")
    else:
        out = b("sub", b("const", value=c), b("mul", v, v, dtype="float32"), dtype="float32")
    pointwise(pb, y, (N,), b, out)
    (got,), _ = pb.run([x], env={"N": x.size})
    return got


@pytest.mark.parametrize("kind", ["add", "sub"])
def test_a_product_plus_a_constant_is_rounded_once(kind):
    """x*a + c and c - x*x are one fused multiply-add (llvm.fmuladd): within half
    an ulp of the exact value (two roundings miss that on some of these inputs),
    and 1 - t*t is never negative for |t| <= 1."""
    from fractions import Fraction
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-1, 1, 3000), [1.0, -1.0, 0.0, -0.0, 1 - 2 ** -24]]).astype(np.float32)
    c = 0.1 if kind == "add" else 1.0
    got = _product_plus_constant(kind, x, c)
    c32 = Fraction(float(np.float32(c)))
    for xv, g in zip(x.tolist(), got.tolist()):
        p = Fraction(xv) * (Fraction(float(np.float32(0.7))) if kind == "add" else Fraction(xv))
        exact = p + c32 if kind == "add" else c32 - p
        ulp = Fraction(float(np.spacing(np.float32(abs(g)))))
        assert abs(Fraction(g) - exact) <= ulp / 2, (kind, xv, g, float(exact))
    if kind == "sub":
        assert np.all(got >= 0)
