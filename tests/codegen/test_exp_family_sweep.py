"""The float32 exp family (codegen/llvm/mathfns.py) over a dense sweep of every
float32 range, with the special values and the edges where the algorithms switch
(tanh's and sigmoid's saturation limits on either side: with AVX2 tanh works on x
itself, not |x|, exp's underflow to subnormals and to 0,
its overflow), once for each instruction set the code takes a different path on:
the host's (vscalef and reciprocal estimates with AVX-512) and AVX2 emulated by
NNGRAPH_CPU_FEATURES=-avx512f (shifted powers of two, true divisions). Each runs in
its own process, since the features are read once per process."""
import json

import pytest

from isa_runs import HOST_AVX512, run_at_isa

OPS = ("exp", "expm1", "tanh", "sigmoid", "softplus")

SWEEP = r"""
import json, sys
import numpy as np
import nngraph as ng
from codegen.llvm import target
from nngraph.ops.elementwise import UNARY_REFS

f32 = np.float32
every = np.arange(0, 2 ** 32, 2 ** 12, dtype=np.uint64).astype(np.uint32).view(f32)   # 1M, all exponents
tiny = f32(np.finfo(f32).smallest_subnormal)
edges = np.concatenate([np.linspace(a, b, 20001) for a, b in
                        [(8.5, 11), (-11, -8.5), (16, 21), (-105, -86), (86, 90), (-0.01, 0.01), (-3, 3)]])
limits = np.array([tiny, -tiny, np.finfo(f32).tiny, -np.finfo(f32).tiny, 10.0, -10.0, 20.0, -20.0, -104.0,
                   88.72284, 88.72285, -103.97208, -87.33655], f32)
special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(f32).max, -np.finfo(f32).max], f32)
x = np.concatenate([special, every, edges.astype(f32), limits])   # special first: in the main vector loop
out = {"avx512f": target.has_feature("avx512f")}
for op in sys.argv[1:]:
    u = ng.placeholder(("N",), name="u")
    got = ng.compile([u], getattr(ng, op)(u), target="cpu")(x)
    with np.errstate(all="ignore"):
        want = np.asarray(UNARY_REFS[op](x.astype(np.float64)), dtype=np.float64)
        w = want.astype(f32)
        spacing = np.maximum(np.spacing(np.abs(w)).astype(np.float64), float(tiny))
        same = (np.isnan(got) & np.isnan(w)) | (got == w)
        err = np.nan_to_num(np.where(same, 0.0, np.abs(got.astype(np.float64) - want) / spacing), nan=np.inf)
    k = int(np.argmax(err))
    n = len(special)
    out[op] = {"max_ulp": float(err.max()), "at": float(x[k]), "got": float(got[k]), "want": float(want[k]),
               "special_got": got[:n].tolist(), "special_want": w[:n].tolist(),
               "special_sign": np.signbit(got[:n]).tolist(), "special_sign_want": np.signbit(w[:n]).tolist()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=["host", "avx2"])
def sweep(request, tmp_path_factory):
    out = json.loads(run_at_isa(SWEEP, request.param, tmp_path_factory.mktemp("sweep"), args=OPS)
                     .strip().splitlines()[-1])
    assert out["avx512f"] == (HOST_AVX512 and request.param == "host")
    return out


@pytest.mark.parametrize("op", OPS)
def test_within_3_ulp_over_a_dense_float32_sweep(sweep, op):
    """Every 4096th float32 (all signs and exponents, subnormals and the extremes
    included) plus dense edges: the bound the project holds these functions to."""
    r = sweep[op]
    assert r["max_ulp"] <= 3, f"{op}: {r['max_ulp']:.2f} ulp at x={r['at']!r}: got {r['got']!r}, want {r['want']!r}"


@pytest.mark.parametrize("op", OPS)
def test_special_values_exactly(sweep, op):
    """+-0 (with its sign), +-inf, NaN and the largest finite values give the exact
    result (0, 1, -1, inf, the input itself or NaN), bit for bit."""
    r = sweep[op]
    got, want = r["special_got"], r["special_want"]
    assert all(g == w or (g != g and w != w) for g, w in zip(got, want)), (op, got, want)
    signs = [(g, w) for g, w, v in zip(r["special_sign"], r["special_sign_want"], want) if v == v]
    assert all(g == w for g, w in signs), (op, got, want)
