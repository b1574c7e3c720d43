import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # so tests can `import progbuild`
from blas_scripts import installed_blas  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test session compiles into its own cache directory."""
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nncache"))


@pytest.fixture(params=installed_blas())
def blas_candidate(request):
    """Object code loaded during the test calls this candidate's sgemm/dgemm and
    thread setter; the chosen BLAS's afterwards."""
    from codegen.llvm import blas
    from codegen.llvm.target import _init, register_blas
    _init()                     # the chosen BLAS registered first, so ours is the last word
    register_blas(blas.candidate_addresses(request.param))
    yield request.param
    register_blas(blas.gemm_addresses())
