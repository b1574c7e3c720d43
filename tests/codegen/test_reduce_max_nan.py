"""Float max and min reductions on the CPU keep their NaN rule (nngraph/semantics.py:
a NaN anywhere makes the result NaN) now that the loop takes the max of the values
apart from NaNs and notes a NaN in a flag of its own (codegen/llvm/stage.py): a NaN
at the first element, inside the vectorised main loop and in its remainder, in rows
long and short, whole-tensor and per-row, on the host's instruction set and on AVX2
emulated by NNGRAPH_CPU_FEATURES=-avx512f (the flag is or-ed in mask registers with
AVX-512 and kept by a signed min without), each in a process of its own."""
import pytest

from isa_runs import HOST_AVX512, run_at_isa

CHECK = r"""
import numpy as np
import nngraph as ng
from codegen.llvm import target

rng = np.random.default_rng(5)
for dt in ("float32", "float64"):
    for n in (1000, 37, 1):
        x = (rng.standard_normal((9, n)) * 5).astype(dt)
        x[1, 0] = np.nan                          # the first element
        x[2, n // 2] = np.nan                     # inside the main loop (or the only one)
        x[3, n - 1] = np.nan                      # in the remainder
        x[4] = -np.inf
        x[5] = np.inf
        x[6] = -0.0
        x[7, ::2] = np.inf
        x[7, 1::2] = np.nan
        if n > 2:
            x[8, 1] = -np.inf
            x[8, 2] = np.inf
        z = ng.placeholder(("N", n), dtype=dt, name="z")
        fn = ng.compile([z], [ng.max(z, axis=1), ng.min(z, axis=1), ng.max(z), ng.min(z)], target="cpu")
        got = fn(x)
        want = [x.max(axis=1), x.min(axis=1), x.max(), x.min()]
        for g, w, what in zip(got, want, ("row max", "row min", "max", "min")):
            np.testing.assert_array_equal(g, w, err_msg=f"{what} {dt} n={n}")
        clean = np.where(np.isnan(x), 0, x).astype(dt)       # without NaNs: the values themselves
        for g, w in zip(fn(clean), [clean.max(axis=1), clean.min(axis=1), clean.max(), clean.min()]):
            np.testing.assert_array_equal(g, w)
print("ok", target.has_feature("avx512f"))
"""


@pytest.mark.parametrize("isa", ["host", "avx2"])
def test_max_and_min_are_nan_where_a_nan_was_met(isa, tmp_path):
    out = run_at_isa(CHECK, isa, tmp_path)
    assert out.split()[-1] == str(HOST_AVX512 and isa == "host")
