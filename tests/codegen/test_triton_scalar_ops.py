"""The Triton printer's scalar-op table (codegen/triton/scalar_ops.py): every op of the
body language in a pointwise kernel against the op's NumPy reference, with special
values (zeros, infinities, NaN, huge and tiny magnitudes)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("triton")
pytest.importorskip("torch")

from progbuild import Dim, ProgBuilder, pointwise  # noqa: E402

from nngraph.ops.elementwise import BINARY_REFS, UNARY_REFS  # noqa: E402
from runtime.gpu import build_program, device_or_error  # noqa: E402

try:
    device_or_error()
except RuntimeError as e:  # pragma: no cover
    pytest.skip(str(e), allow_module_level=True)

N = Dim("N")
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1e-3, -1e-3, 1e-30, -1e-30, 3.0, -3.0, 20.0, -20.0, 88.0, -88.0,
           700.0, -700.0, 1e30, -1e30, np.inf, -np.inf, np.nan]
TOL = {"float32": dict(rtol=2e-5, atol=1e-37), "float64": dict(rtol=1e-12, atol=1e-300)}


def floats(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.standard_normal(200) * 3, rng.uniform(-30, 30, 100),
                        np.exp(rng.uniform(-60, 60, 100)) * rng.choice([-1, 1], 100), SPECIAL])
    return x.astype(dtype)


def run_ops(dtypes_in, out_dtype, build, *arrays):
    pb = ProgBuilder()
    ins = [pb.buf(f"a{k}", dt, (N,), "input") for k, dt in enumerate(dtypes_in)]
    y = pb.buf("y", out_dtype, (N,), "output")
    b = pb.body()
    i = b.idx(0)
    v = build(b, *[b.load(x, i) for x in ins])
    pointwise(pb, y, (N,), b, v)
    runner, _ = build_program(pb.program())
    (out,), _ = runner.run(list(arrays), [], {"N": arrays[0].size})
    return out


UNARY_FLOAT = ["neg", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "abs", "sign", "sin", "cos", "tanh",
               "sigmoid", "relu", "softplus", "step", "stop_gradient"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", UNARY_FLOAT)
def test_unary_float_ops_match_numpy(op, dtype):
    x = floats(dtype)
    if op in ("sin", "cos"):
        x = x[np.isfinite(x) & (np.abs(x) < 100)]
    got = run_ops([dtype], dtype, lambda b, a: b(op, a, dtype=dtype), x)
    with np.errstate(all="ignore"):
        want = np.asarray(UNARY_REFS[op](x.astype(np.float64))).astype(dtype)
    np.testing.assert_allclose(got, want, **TOL[dtype])


BINARY_FLOAT = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]
COMPARE = ["less", "less_equal", "greater", "greater_equal", "equal", "not_equal"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", BINARY_FLOAT + COMPARE)
def test_binary_float_ops_match_numpy(op, dtype):
    x = floats(dtype, 1)
    y = np.roll(floats(dtype, 2), 7)
    if op == "pow":  # bases of both signs, integer and fractional exponents, and the special cases
        x = np.concatenate([np.abs(x[:200]), -np.abs(x[:50]), [0, 0, 0, -2, 1, 1, np.nan]]).astype(dtype)
        y = np.concatenate([np.random.default_rng(3).uniform(-4, 4, 200), [2, 3, -1, 0.5] * 12 + [1, 2],
                            [2, 0, -1, 3, np.nan, np.inf, 0]]).astype(dtype)
    out_dt = "bool" if op in COMPARE else dtype
    got = run_ops([dtype, dtype], out_dt, lambda b, p, q: b(op, p, q, dtype=out_dt), x, y)
    with np.errstate(all="ignore"):
        want = np.asarray(BINARY_REFS[op](x.astype(np.float64), y.astype(np.float64))).astype(out_dt)
    if op == "pow":
        np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == "float32" else 1e-11, atol=1e-30)
    elif out_dt == "bool":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_ops_wrap_and_floor_like_numpy(dtype):
    rng = np.random.default_rng(4)
    x = rng.integers(-10**6, 10**6, 300).astype(dtype)
    y = rng.integers(1, 1000, 300).astype(dtype)           # floordiv/mod: positive divisors
    info = np.iinfo(dtype)
    x[:3] = [info.max, info.min + 1, 0]
    for op in ["add", "sub", "mul", "maximum", "minimum", "floordiv", "mod"] + COMPARE:
        out_dt = "bool" if op in COMPARE else dtype
        got = run_ops([dtype, dtype], out_dt, lambda b, p, q: b(op, p, q, dtype=out_dt), x, y)
        with np.errstate(all="ignore"):
            ref = {"floordiv": np.floor_divide, "mod": np.mod}.get(op) or BINARY_REFS[op]
            want = np.asarray(ref(x, y)).astype(out_dt)
        np.testing.assert_array_equal(got, want, err_msg=op)
    for op in ["neg", "abs", "sign", "relu", "step"]:
        got = run_ops([dtype], dtype, lambda b, p: b(op, p, dtype=dtype), x)
        np.testing.assert_array_equal(got, np.asarray(UNARY_REFS[op](x)).astype(dtype), err_msg=op)


def test_logical_ops_where_and_casts():
    rng = np.random.default_rng(5)
    p, q = rng.random(64) > 0.5, rng.random(64) > 0.3
    for op, ref in [("logical_and", np.logical_and), ("logical_or", np.logical_or)]:
        np.testing.assert_array_equal(run_ops(["bool", "bool"], "bool", lambda b, u, v: b(op, u, v, dtype="bool"),
                                              p, q), ref(p, q))
    np.testing.assert_array_equal(run_ops(["bool"], "bool", lambda b, u: b("logical_not", u, dtype="bool"), p), ~p)
    x = (rng.standard_normal(64) * 100).astype(np.float32)
    y = rng.standard_normal(64).astype(np.float32)
    np.testing.assert_array_equal(
        run_ops(["bool", "float32", "float32"], "float32", lambda b, c, u, v: b("where", c, u, v), p, x, y),
        np.where(p, x, y))
    x[:4] = [0.0, -0.0, 2.7, -2.7]
    for to in ["int32", "int64", "bool", "float64"]:
        got = run_ops(["float32"], to, lambda b, u: b("cast", u, dtype=to), x)
        np.testing.assert_array_equal(got, x.astype(to), err_msg=to)
    i = rng.integers(-10**9, 10**9, 64).astype(np.int64)
    for to in ["float32", "int32", "bool"]:
        got = run_ops(["int64"], to, lambda b, u: b("cast", u, dtype=to), i)
        np.testing.assert_array_equal(got, i.astype(to), err_msg=to)
    np.testing.assert_array_equal(run_ops(["bool"], "float32", lambda b, u: b("cast", u, dtype="float32"), p),
                                  p.astype(np.float32))


CUDA_COMPILE = r"""
import importlib.util, json, sys
import triton
from triton.backends.compiler import GPUTarget
path, dtype = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("fmod_module", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
assert not mod.INTERPRET and isinstance(mod.k0_pw, triton.runtime.jit.JITFunction)
ty = {"float32": "*fp32", "float64": "*fp64", "int32": "*i32"}[dtype]
src = triton.compiler.ASTSource(fn=mod.k0_pw, signature={"a_ptr": ty, "c_ptr": ty, "y_ptr": ty, "N": "i32",
                                                         "XBLOCK": "constexpr", "INDEX64": "constexpr"},
                                constexprs={"XBLOCK": 256, "INDEX64": False})
compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32))
print(json.dumps([line.strip() for line in compiled.asm["ttir"].splitlines()
                  if "extern_elementwise" in line or "arith.rem" in line]))
"""


@pytest.mark.parametrize("dtype, want", [("float32", 'symbol = "__nv_fmodf"'), ("float64", 'symbol = "__nv_fmod"'),
                                         ("int32", "arith.remsi")])
def test_fmod_compiles_to_libdevice_for_a_cuda_gpu(dtype, want, tmp_path):
    """On an NVIDIA GPU a float fmod is libdevice's (__nv_fmodf/__nv_fmod), not `%`: that
    is LLVM's frem (arith.remf), which NVPTX expands as a - trunc(a / b) * b, wrong for
    large quotients and the sign of a zero. The generated module compiled for sm_90
    without a GPU (Triton's own ptxas; TRITON_INTERPRET=0 in a subprocess); integer
    fmod stays srem. The interpreter's values are the tests above."""
    import json
    import os
    import subprocess
    import sys
    from codegen.triton.module import generate
    pb = ProgBuilder()
    a, c = pb.buf("a", dtype, (N,), "input"), pb.buf("c", dtype, (N,), "input")
    y = pb.buf("y", dtype, (N,), "output")
    b = pb.body()
    i = b.idx(0)
    pointwise(pb, y, (N,), b, b("fmod", b.load(a, i), b.load(c, i), dtype=dtype))
    path = tmp_path / "fmod_module.py"
    path.write_text(generate(pb.program())[0])
    p = subprocess.run([sys.executable, "-c", CUDA_COMPILE, str(path), dtype], capture_output=True, text=True,
                       env=dict(os.environ, TRITON_INTERPRET="0"), timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(lines) == 1 and want in lines[0], lines
