"""How nngraph finds the BLAS its generated code calls (codegen/llvm/blas.py): scipy's
own OpenBLAS opened by path, without importing scipy.linalg (a tenth of a second of
a process's first compile), checked by a small product; the same instance as
scipy's whichever is imported first; scipy.linalg.cython_blas when scipy bundles no
such library."""
import ctypes
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from codegen.llvm import blas

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(script: str, tmp_path) -> str:
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(tmp_path))
    for k in ("OPENBLAS_CORETYPE", "NNGRAPH_BLAS_CORETYPE"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


COMPILE = """
    import sys
    import numpy as np
    import nngraph as ng
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 30)).astype(np.float32), rng.standard_normal((30, 20)).astype(np.float32)
    x = ng.placeholder(a.shape, name="x")
    np.testing.assert_allclose(ng.compile([x], x @ ng.parameter(b, name="w"))(a), a @ b, rtol=1e-5, atol=1e-5)
"""


def test_compile_does_not_import_scipy_linalg(tmp_path):
    if not blas._bundled_openblas_path():
        pytest.skip("this scipy bundles no libscipy_openblas (it links another BLAS)")
    out = _run(COMPILE + '    print("LINALG", "scipy.linalg" in sys.modules)', tmp_path)
    assert out.split("LINALG")[1].split() == ["False"]


def test_one_instance_when_scipy_comes_second(tmp_path):
    """nngraph opens scipy's library first, scipy.linalg imported afterwards links the
    same one: one copy mapped, and scipy's products still right."""
    out = _run(COMPILE + """
    import scipy.linalg
    from scipy.linalg.blas import sgemm
    np.testing.assert_allclose(sgemm(1.0, a, b), a @ b, rtol=1e-5, atol=1e-5)
    maps = open("/proc/self/maps").read().splitlines()
    paths = {l.split(maxsplit=5)[-1] for l in maps if "libscipy_openblas-" in l}
    print("PATHS", len(paths))
    """, tmp_path)
    assert out.split("PATHS")[1].split() == ["1"]


def test_products_agree_with_the_real_library():
    path = blas.loaded_openblas_path() or blas._bundled_openblas_path()
    if not path:
        pytest.skip("this scipy bundles no libscipy_openblas")
    assert blas._products_agree(ctypes.CDLL(path))


class _FakeLibrary:
    """A library whose gemm symbols do something else than a product."""

    def __init__(self, write):
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))

        def gemm(*args):
            if write:   # c[0] = 1: a wrong product
                ctypes.cast(args[11], ctypes.POINTER(ctypes.c_float))[0] = 1.0
        self.keep = proto(gemm)
        self.scipy_sgemm_ = self.keep
        self.scipy_dgemm_ = self.keep


@pytest.mark.parametrize("write", [False, True])
def test_products_agree_refuses_a_library_that_does_not_multiply(write):
    assert not blas._products_agree(_FakeLibrary(write))


def test_products_agree_refuses_a_library_without_the_symbols():
    assert not blas._products_agree(object())


def test_without_a_bundled_library_the_pointers_come_from_cython_blas(monkeypatch):
    """A scipy built against another BLAS: the addresses scipy.linalg.cython_blas
    exports, and they multiply."""
    monkeypatch.setattr(blas, "scipy_openblas", lambda core_type="": None)
    monkeypatch.delenv("NNGRAPH_BLAS_CORETYPE", raising=False)
    from scipy.linalg import cython_blas
    addr = blas.openblas_addresses()
    assert addr["sgemm"] == blas._capsule_ptr(cython_blas.__pyx_capi__["sgemm"])
    proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))
    gemm = proto(addr["sgemm"])
    a = np.asfortranarray([[1, 2], [3, 4]], dtype=np.float32)
    b = np.asfortranarray([[5, 6], [7, 8]], dtype=np.float32)
    c = np.zeros((2, 2), np.float32, order="F")
    two, one, zero, n = ctypes.c_int(2), ctypes.c_float(1), ctypes.c_float(0), ctypes.c_char(b"N")
    ref = ctypes.byref
    gemm(ref(n), ref(n), ref(two), ref(two), ref(two), ref(one), a.ctypes.data, ref(two), b.ctypes.data,
         ref(two), ref(zero), c.ctypes.data, ref(two))
    np.testing.assert_array_equal(c, a @ b)


def test_bundled_path_is_empty_without_scipy(monkeypatch):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert blas._bundled_openblas_path() == ""
