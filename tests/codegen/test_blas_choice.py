"""Which BLAS runs (codegen/llvm/blas_choice.py, mkl.py): NNGRAPH_BLAS, the user's
OPENBLAS_CORETYPE, the per-host table (measured once, written atomically, a damaged
or foreign one measured again), MKL's layers and its check, and the whole path in a
fresh process without the mkl wheel. No timing is asserted."""
import ctypes
import importlib.metadata
import json
import os
import textwrap
import types

import blas_scripts
import pytest

from codegen import cache
from codegen.llvm import blas, blas_choice, mkl


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean BLAS environment and a private cache directory."""
    for k in ("NNGRAPH_BLAS", "NNGRAPH_BLAS_CORETYPE", "OPENBLAS_CORETYPE", "NNGRAPH_MKL_THREADING"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    return monkeypatch


def two_candidates(loaded: list):
    """Two names for scipy's OpenBLAS (so that timing them is real), each recording
    that it was loaded."""
    def loader(name):
        def load():
            loaded.append(name)
            return blas.openblas_addresses()
        return load
    return {"a": loader("a"), "b": loader("b")}


def table_path():
    return cache.cache_dir() / blas_choice.CACHE_FILE


@pytest.mark.parametrize("value, want", [("", "auto"), ("auto", "auto"), ("MKL", "mkl"), (" openblas ", "openblas")])
def test_requested(value, want):
    assert blas_choice.requested({"NNGRAPH_BLAS": value}) == want


def test_bad_request_names_the_variable():
    with pytest.raises(ValueError, match="NNGRAPH_BLAS must be one of auto, openblas, mkl.*'atlas'"):
        blas_choice.requested({"NNGRAPH_BLAS": "atlas"})


@pytest.mark.parametrize("environment, pinned", [
    ({"OPENBLAS_CORETYPE": "Haswell"}, True),                                  # respected as before
    ({}, False),
    ({"OPENBLAS_CORETYPE": "Haswell", "NNGRAPH_BLAS": "auto"}, False),          # opted in to a choice
    ({"OPENBLAS_CORETYPE": "Haswell", "NNGRAPH_BLAS_CORETYPE": "host"}, False),
    ({"OPENBLAS_CORETYPE": "Haswell", "NNGRAPH_BLAS_CORETYPE": "inherit"}, True),
])
def test_a_pinned_openblas_core_type_is_respected(environment, pinned):
    assert blas_choice.pinned_core_type(environment) == pinned


def test_pinned_core_type_keeps_openblas_untimed(env):
    env.setenv("OPENBLAS_CORETYPE", "Haswell")
    loaded = []
    assert blas_choice.choose(two_candidates(loaded) | {"openblas": lambda: 1 / 0}, ("a", "b"), [], 2) \
        == ("openblas", None)
    assert loaded == [] and not table_path().exists()


def test_measured_once_per_host_then_read_back(env):
    loaded, threads = [], blas.configured_threads()
    name, entry = blas_choice.choose(two_candidates(loaded), ("a", "b"), ["test"], threads)
    assert name in ("a", "b") and entry["choice"] == name
    assert set(entry["seconds"]) == {"a", "b"} and all(s > 0 for s in entry["seconds"].values())
    labels = {f"{m}x{k}x{n}/{t}" for m, k, n, *_ in blas_choice.SHAPES for t in {1, threads}}
    assert set(entry["gflops"]["a"]) == labels
    stored = json.loads(table_path().read_text())
    assert list(stored.values()) == [entry]
    # the next process (here: the next call) reads the table: no timing, only the winner loaded
    loaded.clear()
    env.setattr(blas_choice, "time_candidates", lambda *a: pytest.fail("timed again"))
    assert blas_choice.choose(two_candidates(loaded), ("a", "b"), ["test"], threads)[0] == name
    assert loaded == [name]
    # another host (or other settings): its own entry
    env.setattr(blas_choice, "time_candidates", lambda usable, threads, **kw: {"choice": "b"})
    assert blas_choice.choose(two_candidates([]), ("a", "b"), ["other"], 2) == ("b", {"choice": "b"})
    assert len(json.loads(table_path().read_text())) == 2


@pytest.mark.parametrize("damage", ["garbage", "list", "bad choice"])
def test_a_damaged_table_is_measured_again_and_replaced(env, damage):
    key = blas_choice.host_key(["test"])
    table_path().parent.mkdir(parents=True, exist_ok=True)
    table_path().write_text({"garbage": "{not json", "list": "[1, 2]",
                             "bad choice": json.dumps({key: {"choice": "atlas"}})}[damage])
    os.chmod(table_path(), 0o600)
    timed = []
    env.setattr(blas_choice, "time_candidates", lambda usable, threads, **kw: timed.append(1) or {"choice": "b"})
    assert blas_choice.choose(two_candidates([]), ("a", "b"), ["test"], 2)[0] == "b"
    assert timed == [1] and json.loads(table_path().read_text())[key] == {"choice": "b"}


def test_a_table_others_can_write_is_not_trusted(env):
    key = blas_choice.host_key(["test"])
    table_path().parent.mkdir(parents=True, exist_ok=True)
    table_path().write_text(json.dumps({key: {"choice": "a"}}))
    os.chmod(table_path(), 0o666)
    env.setattr(blas_choice, "time_candidates", lambda usable, threads, **kw: {"choice": "b"})
    with pytest.warns(RuntimeWarning, match="writable by group or others"):
        assert blas_choice.choose(two_candidates([]), ("a", "b"), ["test"], 2)[0] == "b"


def test_the_table_is_replaced_atomically(env):
    """A write that fails leaves the old table whole and no temporary file behind."""
    assert cache.write_json_table(blas_choice.CACHE_FILE, {"k": {"choice": "a"}})
    before = table_path().read_bytes()

    def fail(*args):
        raise OSError("disk full")
    env.setattr(os, "replace", fail)
    assert not cache.write_json_table(blas_choice.CACHE_FILE, {"k": {"choice": "b"}})
    assert table_path().read_bytes() == before
    assert [p.name for p in table_path().parent.iterdir()] == [blas_choice.CACHE_FILE]


def test_one_usable_candidate_is_used_untimed(env):
    env.setattr(blas_choice, "time_candidates", lambda *a: pytest.fail("timed"))
    cands = two_candidates([]) | {"b": lambda: 1 / 0}         # b installed but broken
    assert blas_choice.choose(cands, ("a", "b"), ["test"], 2) == ("a", None)
    assert blas_choice.choose(two_candidates([]), ("a",), ["test"], 2) == ("a", None)


def hide_mkl(monkeypatch):
    from codegen.llvm import dist_version
    real, real_folder = importlib.metadata.distribution, dist_version.metadata_folder

    def distribution(name):
        if name == "mkl":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)
    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setattr(dist_version, "metadata_folder", lambda name: None if name == "mkl" else real_folder(name))


def test_forced_mkl_without_the_wheel_names_the_extra(env):
    hide_mkl(env)
    env.setenv("NNGRAPH_BLAS", "mkl")
    assert not mkl.installed()
    with pytest.raises(mkl.MklUnavailable, match=r"NNGRAPH_BLAS=mkl: the mkl wheel is not installed "
                                                 r"\(pip install \"nngraph\[mkl\]\"\)"):
        blas_choice.choose({"openblas": blas.openblas_addresses, "mkl": mkl.library_path}, ("openblas",), [], 2)


def test_threading_layer_default_and_override():
    assert mkl.threading_layer({}) == "sequential"
    assert mkl.threading_layer({"NNGRAPH_MKL_THREADING": " Intel"}) == "intel"
    with pytest.raises(ValueError, match="NNGRAPH_MKL_THREADING must be one of gnu, intel, sequential"):
        mkl.threading_layer({"NNGRAPH_MKL_THREADING": "tbb"})


def test_intel_layer_is_refused_without_intel_openmp(tmp_path):
    """MKL would end the process at its first product: refused before loading."""
    rt = tmp_path / "libmkl_rt.so.3"
    rt.write_bytes(b"")
    with pytest.raises(mkl.MklUnavailable, match="needs Intel OpenMP"):
        mkl._check_layer_present("intel", str(rt))
    (tmp_path / "libiomp5.so").write_bytes(b"")
    mkl._check_layer_present("intel", str(rt))


def test_a_library_that_computes_wrong_is_refused():
    """The check before trusting MKL: a 'gemm' that leaves C as it was fails it."""
    noop = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))(lambda *args: None)
    noop_gemv = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 11))(lambda *args: None)
    threads = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda n: 1)
    fake = types.SimpleNamespace(sgemm_=noop, dgemm_=noop, sgemv_=noop_gemv, dgemv_=noop_gemv,
                                 MKL_Set_Num_Threads_Local=threads)
    with pytest.raises(mkl.MklUnavailable, match="computed a float32 product wrong"):
        mkl.Mkl(fake, "sequential", 1, "/fake/libmkl_rt.so.3").verify()


@pytest.mark.skipif(not mkl.installed(), reason="the mkl wheel is not installed (pip install 'nngraph[mkl]')")
def test_mkl_is_found_through_the_wheel_and_checked():
    path = mkl.library_path()
    assert os.path.basename(path).startswith("libmkl_rt.so") and os.path.isfile(path)
    lib = blas.mkl_instance()                 # loaded, set up and verified
    assert lib.describe().startswith(f"mkl {mkl.version()} (sequential, MKL_CBWR=AUTO,STRICT)"
                                     if lib.layer == "sequential" else f"mkl {mkl.version()} ({lib.layer} threading")
    assert set(lib.addresses) == {"sgemm", "dgemm", "sgemv", "dgemv", "blas_threads_local"}


SCRIPT = blas_scripts.NO_MKL_WHEEL + textwrap.dedent("""
    import os
    import numpy as np
    import nngraph as ng
    x = ng.placeholder((16, 8), name="x")
    w = ng.placeholder((8, 4), name="w")
    a, b = np.ones((16, 8), np.float32), np.ones((8, 4), np.float32)
    os.environ["NNGRAPH_BLAS"] = "mkl"
    try:
        ng.compile([x, w], x @ w, target="cpu")
    except Exception as e:
        print("ERROR", type(e).__name__, e)
    del os.environ["NNGRAPH_BLAS"]
    fn = ng.compile([x, w], x @ w, target="cpu")
    assert (fn(a, b) == 8).all()
    print("BLAS", fn.stats()["blas"])
    print("TABLE", os.path.exists(os.path.join(os.environ["NNGRAPH_CACHE_DIR"], "blas-choice.json")))
""")


def test_without_the_wheel_everything_runs_on_openblas(tmp_path):
    """A fresh process where the mkl wheel is not installed: NNGRAPH_BLAS=mkl is a
    clear error naming the extra; by default the products run on OpenBLAS, and
    nothing is timed or stored."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NNGRAPH_BLAS", "OPENBLAS_CORETYPE"))}
    stdout = blas_scripts.run(SCRIPT, env=dict(environ, NNGRAPH_CACHE_DIR=str(tmp_path)))
    lines = dict(line.split(" ", 1) for line in stdout.splitlines())
    assert lines["ERROR"] == 'MklUnavailable NNGRAPH_BLAS=mkl: the mkl wheel is not installed (pip install "nngraph[mkl]")'
    assert lines["BLAS"].startswith("openblas ") and lines["TABLE"] == "False"


def test_the_blas_is_part_of_the_compile_key(monkeypatch):
    """The machine code is the same for both, but convolution layouts are timed with
    the BLAS: a function compiled under one is not a cache hit under the other."""
    from runtime.compile_cache import compile_key
    keys = set()
    for name in ("openblas 0.3.30 (scipy's, core type SkylakeX, 2 threads)", "mkl 2026.2.0 (sequential, MKL_CBWR=AUTO,STRICT)"):
        monkeypatch.setattr(blas, "describe", lambda name=name: name)
        keys.add(compile_key("graph", {}))
    assert len(keys) == 2


TORCH_FIRST = """
    import ctypes
    import torch                            # PyTorch's own MKL first
"""
TORCH_SCRIPT = textwrap.dedent("""
    np.testing.assert_allclose((torch.from_numpy(a) @ torch.from_numpy(b)).numpy(), a @ b, rtol=1e-5, atol=1e-5)
    print("BLAS", fn.stats()["blas"])
    print("GLOBAL", hasattr(ctypes.CDLL(None), "MKL_Set_Threading_Layer"))
""")


@pytest.mark.skipif(not mkl.installed(), reason="the mkl wheel is not installed (pip install 'nngraph[mkl]')")
def test_mkl_lives_beside_pytorch_without_exporting_its_symbols(tmp_path):
    pytest.importorskip("torch")
    environ = dict(os.environ, NNGRAPH_BLAS="mkl", NNGRAPH_CACHE_DIR=str(tmp_path))
    stdout = blas_scripts.run(TORCH_FIRST, blas_scripts.COMPILED_PRODUCT, TORCH_SCRIPT, env=environ)
    lines = dict(line.split(" ", 1) for line in stdout.splitlines())
    assert lines["BLAS"].startswith("mkl ") and lines["GLOBAL"] == "False"


def test_sequential_layer_is_available_exactly_when_mkl_is_installed():
    from codegen.llvm import mkl
    assert mkl.layer_available("sequential") is mkl.installed()


def test_a_one_thread_blas_is_timed_as_one_part_of_our_split(env):
    """MKL's sequential layer ignores a thread count: the generated code splits its
    products across our threads instead, so its `threads` mode is timed as one part
    (the first ceil(m/threads) rows), the other candidate's as the whole product on its
    own threads. Before, both timed the whole product, and a two-thread OpenBLAS beat
    an MKL that nngraph runs split two ways."""
    import codegen.llvm.blas_call as blas_call
    built = []
    real = blas_call.row_major_gemm

    def recording(gemm, a, b, c, ta=False, tb=False, **kw):
        built.append((a.shape, c.shape, ta))
        return real(gemm, a, b, c, ta, tb, **kw)
    usable = {"a": blas.openblas_addresses(), "b": blas.openblas_addresses()}
    env.setattr(blas_call, "row_major_gemm", recording)
    shapes = ((5, 8, 6, False, False), (7, 4, 3, True, False))
    entry = blas_choice.time_candidates(usable, 2, shapes=shapes, rounds=1, one_thread=frozenset({"b"}))
    # per shape: a/1, a/2 (whole), b/1 (whole), b/2 (a part of ceil(m/2) rows)
    assert [c for _, c, _ in built] == [(5, 6), (5, 6), (5, 6), (3, 6), (7, 3), (7, 3), (7, 3), (4, 3)]
    assert built[-1][0] == (4, 4) and built[-1][2]          # trans_a: the part is a's first 4 columns
    assert set(entry["gflops"]["b"]) == {"5x8x6/1", "5x8x6/2", "7x4x3/1", "7x4x3/2"}
