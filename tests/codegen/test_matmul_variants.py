"""A product that our threads may cut along its rows or its columns (entry.py's
_launch_rows_or_columns) has one function per way it can be cut. When both sizes are
known when compiling, only the variant that runs is emitted (the other was IR for
LLVM to optimise for nothing); with a symbolic size both are, and the choice is made
at run time. Every function the module defines is called."""
import re

import numpy as np
import pytest

from passes.program import MatmulKernel
from progbuild import Dim, ProgBuilder


@pytest.fixture
def split_products(monkeypatch):
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "GEMM_WORK", 1 << 10)
    monkeypatch.setattr(entry, "GEMM_COLUMN_WORK", 1 << 40)
    monkeypatch.setattr(entry, "N_THREADS", 2)


def _product(rows, k, cols):
    pb = ProgBuilder()
    a = pb.buf("a", "float64", (rows, k), "input")
    b = pb.buf("b", "float64", (k, cols), "input")
    out = pb.buf("out", "float64", (rows, cols), "output")
    pb.kernel(MatmulKernel("mm", a, b, out, (), rows, cols, k, False, False, 1.0, 0.0, None))
    return pb


def _defined(text: str) -> list:
    return re.findall(r'^define [^@]*@"?([\w.]+)"?\(', text, re.M)


def _module(pb) -> str:
    import codegen.llvm.entry as entry
    text, _ = entry.build_module(pb.program())
    return text


@pytest.mark.usefixtures("split_products")
@pytest.mark.parametrize("rows, cols, variant", [(9, 131, "k0_mm_cols"), (131, 9, "k0_mm")])
def test_known_sizes_emit_only_the_variant_that_runs(rows, cols, variant):
    pb = _product(rows, 40, cols)
    matmuls = [f for f in _defined(_module(pb)) if f.startswith("k0_mm")]
    assert matmuls == [variant]
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((rows, 40)), rng.standard_normal((40, cols))
    (got,), _ = pb.run([a, b])
    np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.usefixtures("split_products")
@pytest.mark.parametrize("n", [5, 300])
def test_a_symbolic_size_keeps_both_variants_and_chooses_when_run(n):
    pb = _product(Dim("N"), 40, 131)
    assert sorted(f for f in _defined(_module(pb)) if f.startswith("k0_mm")) == ["k0_mm", "k0_mm_cols"]
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((n, 40)), rng.standard_normal((40, 131))
    (got,), _ = pb.run([a, b], env={"N": n})
    np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.usefixtures("split_products")
@pytest.mark.parametrize("rows", [9, 131, Dim("N")])
def test_every_defined_function_is_called(rows):
    text = _module(_product(rows, 40, 70))
    body = "\n".join(line for line in text.splitlines() if not line.startswith("define"))
    for name in _defined(text):
        if name != "nngraph_entry":       # called (@f(...)) or handed to a launch (@f, or @f)
            assert re.search(rf'@"?{re.escape(name)}"?[(,)]', body), name
