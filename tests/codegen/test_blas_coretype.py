"""Which OpenBLAS core type nngraph's BLAS is loaded with (codegen/llvm/target.py):
SkylakeX over an environment's AVX2 pin on an AVX-512 CPU, the user's choice
otherwise, never an AVX-512 type on a CPU without AVX-512."""
import os

import pytest

from codegen.llvm import target


@pytest.fixture
def chooser(monkeypatch):
    def make(env: dict, avx512: bool):
        for k in ("NNGRAPH_BLAS_CORETYPE", "OPENBLAS_CORETYPE"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        c = target._openblas_avx512()
        monkeypatch.setattr(c, "host_has_avx512", lambda: avx512)
        return c.choice()
    return make


@pytest.mark.parametrize("env, avx512, want", [
    ({"OPENBLAS_CORETYPE": "Haswell"}, True, "SkylakeX"),
    ({"OPENBLAS_CORETYPE": "Haswell"}, False, ""),
    ({"OPENBLAS_CORETYPE": "SkylakeX"}, True, ""),
    ({}, True, ""),                                     # OpenBLAS detects the CPU itself
    ({"OPENBLAS_CORETYPE": "Haswell", "NNGRAPH_BLAS_CORETYPE": "inherit"}, True, ""),
    ({"NNGRAPH_BLAS_CORETYPE": "Zen"}, False, "Zen"),
    ({"NNGRAPH_BLAS_CORETYPE": "SkylakeX"}, False, ""),  # would crash on this CPU
    ({"NNGRAPH_BLAS_CORETYPE": "SkylakeX"}, True, "SkylakeX"),
])
def test_core_type_choice(chooser, env, avx512, want):
    assert chooser(env, avx512) == want


def test_environment_is_restored(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("NNGRAPH_BLAS_CORETYPE", "Zen")
    monkeypatch.setattr(target, "_scipy_openblas_loaded", lambda: False)
    with target._openblas_avx512():
        assert os.environ["OPENBLAS_CORETYPE"] == "Zen"
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"
