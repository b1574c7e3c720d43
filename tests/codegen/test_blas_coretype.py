"""Which OpenBLAS core type nngraph's BLAS is loaded with (codegen/llvm/blas.py):
the user's OPENBLAS_CORETYPE unless NNGRAPH_BLAS_CORETYPE opts in to another (=host:
the type for the host's vector width), never an AVX-512 type on a CPU without AVX-512; and the choice holds when
scipy loaded its OpenBLAS first (nngraph then loads its own verified copy)."""
import os
import textwrap

import blas_scripts
import pytest

from codegen.llvm import blas


@pytest.fixture
def chooser(monkeypatch):
    def make(env: dict, avx512: bool):
        for k in ("NNGRAPH_BLAS_CORETYPE", "OPENBLAS_CORETYPE"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setattr(blas, "host_has_avx512", lambda: avx512)
        monkeypatch.setattr(blas, "host_vendor", lambda: "GenuineIntel")
        return blas.core_type_choice()
    return make


@pytest.mark.parametrize("env, avx512, want", [
    ({"OPENBLAS_CORETYPE": "Haswell"}, True, ""),      # the user's pin is respected
    ({"OPENBLAS_CORETYPE": "Haswell"}, False, ""),
    ({"OPENBLAS_CORETYPE": "Haswell", "NNGRAPH_BLAS_CORETYPE": "host"}, True, "SkylakeX"),  # opted in
    ({"OPENBLAS_CORETYPE": "SkylakeX", "NNGRAPH_BLAS_CORETYPE": "host"}, False, "Haswell"),
    ({"NNGRAPH_BLAS_CORETYPE": "HOST"}, True, "SkylakeX"),
    ({"OPENBLAS_CORETYPE": "SkylakeX"}, True, ""),
    ({}, True, ""),                                     # OpenBLAS detects the CPU itself
    ({"OPENBLAS_CORETYPE": "Haswell", "NNGRAPH_BLAS_CORETYPE": "inherit"}, True, ""),
    ({"NNGRAPH_BLAS_CORETYPE": "Zen"}, False, "Zen"),
    ({"NNGRAPH_BLAS_CORETYPE": "SkylakeX"}, False, ""),  # would crash on this CPU
    ({"NNGRAPH_BLAS_CORETYPE": "SkylakeX"}, True, "SkylakeX"),
])
def test_core_type_choice(chooser, env, avx512, want):
    assert chooser(env, avx512) == want


@pytest.mark.parametrize("bits, vendor, want", [
    (512, "GenuineIntel", "SkylakeX"), (512, "AuthenticAMD", "SkylakeX"),
    (256, "AuthenticAMD", "Zen"), (256, "GenuineIntel", "Haswell"), (128, "GenuineIntel", "")])
def test_host_core_type_follows_vector_width_and_vendor(bits, vendor, want):
    assert blas.host_core_type(bits, vendor) == want


def test_environment_is_restored(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    with blas._environment("OPENBLAS_CORETYPE", "Zen"):
        assert os.environ["OPENBLAS_CORETYPE"] == "Zen"
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"
    with blas._environment("OPENBLAS_CORETYPE", None):
        assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"


def test_bad_thread_count_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("NNGRAPH_BLAS_THREADS", "many")
    with pytest.raises(ValueError, match="NNGRAPH_BLAS_THREADS"):
        blas.set_threads(lambda n: None)


def test_copy_is_verified_and_replaced_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    src = tmp_path / "libscipy_openblas-test.so"
    src.write_bytes(os.urandom(4096))
    dst = blas._verified_copy(str(src))
    assert open(dst, "rb").read() == src.read_bytes()
    with open(dst, "r+b") as f:          # corrupt one byte
        f.write(b"\0" if src.read_bytes()[:1] != b"\0" else b"\1")
    assert blas._verified_copy(str(src)) == dst
    assert open(dst, "rb").read() == src.read_bytes()


PRELUDE = """
    import ctypes, os
    from scipy.linalg import cython_blas        # scipy's OpenBLAS first, with the pin
    from codegen.llvm import blas
"""
SCRIPT = textwrap.dedent("""
    maps = open("/proc/self/maps").read().splitlines()
    paths = {l.split(maxsplit=5)[-1] for l in maps if "libscipy_openblas-" in l}
    # nngraph's private copy lives in a cache folder named blas-<tag>; scipy's own does not
    private = [p for p in paths if os.path.basename(os.path.dirname(p)).startswith("blas-")]
    lib = blas.private_instance(blas.core_type_choice())
    corename = lib.scipy_openblas_get_corename
    corename.restype = ctypes.c_char_p
    print("PRIVATE", len(private), len(paths), corename().decode())
    print("STATS", fn.stats()["blas"])
""")


def test_choice_holds_when_scipy_loaded_its_blas_first(tmp_path):
    """scipy loads its OpenBLAS pinned to one core type; nngraph asks for another (one
    that every x86-64 CPU with AVX2 runs, so the test holds on any CI machine): it must
    load its own instance with that type, beside scipy's."""
    env = dict(os.environ, OPENBLAS_CORETYPE="Sandybridge", NNGRAPH_BLAS_CORETYPE="Haswell",
               NNGRAPH_BLAS="openblas", NNGRAPH_CACHE_DIR=str(tmp_path))
    stdout = blas_scripts.run(PRELUDE, blas_scripts.COMPILED_PRODUCT, SCRIPT, env=env)
    n_private, n_paths, core = stdout.split("PRIVATE")[1].split()[:3]
    assert (n_private, n_paths, core) == ("1", "2", "Haswell")
    assert "(scipy's, own instance, core type Haswell" in stdout.split("STATS")[1]
