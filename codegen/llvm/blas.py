"""The BLAS the generated code calls (sgemm/dgemm, Fortran convention, 32-bit sizes),
with the core type and thread count nngraph wants. Two candidates: scipy's OpenBLAS
(always there) and Intel MKL (the `mkl` wheel, codegen/llvm/mkl.py); which one runs
is chosen once per host by timing both (codegen/llvm/blas_choice.py, NNGRAPH_BLAS).

Core type (OpenBLAS). OpenBLAS picks its kernels for the CPU it finds, unless
OPENBLAS_CORETYPE names a type; a type pinned for an older CPU (an AVX2 type such as
Haswell on an AVX-512 CPU) runs sgemm at about half the speed (128x784 @ 784x512 on
one thread: 950 us vs 510 us; MLP 784-512-256-10 SGD step 1.89 ms vs 1.22 ms).
A user's explicit OPENBLAS_CORETYPE is respected unless they opt in:

    NNGRAPH_BLAS_CORETYPE unset    the environment's OPENBLAS_CORETYPE as it is
    (or =inherit)                  (none: OpenBLAS's own choice for this CPU)
    NNGRAPH_BLAS_CORETYPE=host     the type for this host's vector width, over any
                                   pin: SkylakeX with AVX-512, else Zen (AMD) or
                                   Haswell (Intel) with AVX2 (host_core_type)
    NNGRAPH_BLAS_CORETYPE=<name>   that core type (an AVX-512 one only on such a CPU;
                                   with its AVX-512 turned off, the AVX2 type)

On an AVX-512 CPU whose AVX-512 NNGRAPH_CPU_FEATURES turns off (-avx512f), unset or
inherit with no OPENBLAS_CORETYPE means "host", the AVX2 type (Haswell, Zen on AMD), and MKL
is held to AVX2 (mkl.py): the whole BLAS runs as on an AVX2 machine.

OpenBLAS reads the variable once, when the library is loaded. If scipy already
loaded it (a user who imported scipy or scikit-learn first), nngraph loads its own
instance from a verified copy of the library in the cache directory, so the choice
holds whatever the import order; NumPy's and scipy's instances are never touched.

Found by path: scipy bundles its OpenBLAS as scipy.libs/libscipy_openblas-<hash>.so
(symbols scipy_sgemm_ ...); nngraph opens that file with ctypes (scipy_openblas)
instead of importing scipy.linalg for cython_blas's pointers, which took 0.12 s of
a process's first compile, and checks it with a small product. The library is
loaded once per process whoever opens it first, so scipy and nngraph share the
instance as before. A scipy without that file (built against another BLAS) is
asked through scipy.linalg.cython_blas.

Threads: the instance is set to NNGRAPH_BLAS_THREADS (default one per physical core,
codegen/tuning.py); one call of the generated code uses threads_per_call() of them:
one when nngraph's worker pool splits the products (tuning.blas_call_threads).
"""
from __future__ import annotations

import ctypes
import filecmp
import functools
import hashlib
import os
import shutil
import tempfile

AVX512_TYPES = ("skylakex", "cooperlake", "sapphirerapids")
GEMMS = ("sgemm", "dgemm")
ROUTINES = GEMMS + ("sgemv", "dgemv")   # what the generated code calls (matmul.py, gemv.py)


CANDIDATES = ("openblas", "mkl")


def gemm_addresses() -> dict:
    """{"sgemm", "dgemm", "sgemv", "dgemv", "blas_threads_local": address} of the BLAS
    the generated code calls (registered as nngraph_<key>); blas_threads_local is `int f(int n)`:
    use n threads for the calling thread's calls from now on (generated code runs
    small GEMMs on one thread, see matmul.py)."""
    return candidate_addresses(chosen_blas())


def candidate_addresses(name: str) -> dict:
    """gemm_addresses of candidate `name` ("openblas" or "mkl"), loaded and checked
    (raises why not, for a candidate that cannot run here)."""
    if name == "mkl":
        return mkl_instance().addresses
    return openblas_addresses()


def chosen_blas() -> str:
    """"openblas" or "mkl": NNGRAPH_BLAS, or the faster on this host (blas_choice.py)."""
    return _choice()[0]


def threads_per_call() -> int:
    """BLAS threads one call of the generated code may use (matmul.py sets the count
    around each call): that of the chosen BLAS (call_threads)."""
    return call_threads(chosen_blas())


def call_threads(name: str) -> int:
    """BLAS threads one call of candidate `name` may use: one under MKL's sequential
    layer (its products never leave the calling thread), the configured count under
    a threaded MKL layer (NNGRAPH_MKL_THREADING asks for MKL's own threads), else the
    host's rule (codegen/tuning.py blas_call_threads: one when nngraph's worker pool
    splits the products, so that OpenBLAS's workers never wait on the pool's cores)."""
    from codegen.tuning import tuning
    from . import mkl
    if name == "mkl":
        return 1 if mkl.threading_layer() == "sequential" else configured_threads()
    return tuning().blas_call_threads


def choice_measurement():
    """The timing that chose the BLAS ({"choice", "seconds", "gflops", ...}), or None
    when nothing was timed (forced, or one candidate installed)."""
    return _choice()[1]


@functools.lru_cache(maxsize=None)
def _choice() -> tuple:
    from .blas_choice import choose
    from . import mkl
    installed = tuple(name for name in CANDIDATES if name != "mkl" or mkl.installed())
    one_thread = frozenset(name for name in CANDIDATES if call_threads(name) == 1)
    return choose({name: functools.partial(candidate_addresses, name) for name in CANDIDATES}, installed,
                  choice_key_parts(), configured_threads(), one_thread)


def choice_key_parts() -> list:
    """What the choice depends on besides the CPU: each candidate's version and
    settings (core type, threading layer, instruction cap, thread count, threads per call)."""
    from . import mkl
    threads = configured_threads()
    try:
        layer = mkl.threading_layer()
    except ValueError:
        layer = "?"
    return [f"openblas {_scipy_version()} {core_type_choice()} "
            f"{os.environ.get('OPENBLAS_CORETYPE', '')}", f"mkl {mkl.version()} {layer} {os.environ.get('MKL_CBWR', '')} "
            f"{os.environ.get('MKL_ENABLE_INSTRUCTIONS', '')}",
            f"threads {threads}", "per call " + " ".join(str(call_threads(name)) for name in CANDIDATES)]


def describe() -> str:
    """Which BLAS the generated code calls, for fn.stats()["blas"] and profile headers:
    e.g. "mkl 2026.2.0 (sequential, MKL_CBWR=AUTO,STRICT)", "openblas 0.3.30 (scipy's,
    core type SkylakeX, 1 thread per call: products split by nngraph's threads)"."""
    name = chosen_blas()
    return _description(name, configured_threads(), call_threads(name))


@functools.lru_cache(maxsize=None)
def _description(name: str, n: int, per_call: int) -> str:
    if name == "mkl":
        return mkl_instance().describe()
    lib, private = _openblas_instance()
    config = _openblas_text(lib, "scipy_openblas_get_config").split()   # "OpenBLAS 0.3.30 DYNAMIC_ARCH ..."
    version = config[1] if len(config) > 1 else _scipy_version()
    core = openblas_core() or "?"
    own = ", own instance" if private else ""
    threads = (f"{n} thread{'s' * (n > 1)}" if per_call == n or n == 1 else
               "1 thread per call: products split by nngraph's threads")
    return f"openblas {version} (scipy's{own}, core type {core}, {threads})"


def openblas_core() -> str:
    """The core type the OpenBLAS instance nngraph calls runs (loaded if it is not yet),
    as OpenBLAS names it ("Haswell", "SkylakeX"), or "" where it cannot say."""
    return _openblas_text(_openblas_instance()[0], "scipy_openblas_get_corename")


def _openblas_instance() -> tuple:
    """(ctypes library or None, whether it is nngraph's own) of the OpenBLAS nngraph calls."""
    if not _openblas_used:
        openblas_addresses()
    return _openblas_used["lib"], _openblas_used["private"]


def _openblas_text(lib, name: str) -> str:
    fn = getattr(lib, name, None) if lib is not None else None
    if fn is None:
        return ""
    fn.restype = ctypes.c_char_p
    return (fn() or b"").decode(errors="replace")


def mkl_instance():
    """MKL loaded with the threading layer and thread count of this process (mkl.py)."""
    from . import mkl
    threads = configured_threads()
    return mkl.load(mkl.threading_layer(), threads)


_openblas_used: dict = {}    # "lib" (ctypes, or None), "private": the instance openblas_addresses gave


def _scipy_version() -> str:
    from .dist_version import installed_version
    return f"scipy {installed_version('scipy')}"


def openblas_addresses() -> dict:
    """gemm_addresses of scipy's OpenBLAS, or of nngraph's own instance of it when a
    core type is asked for and scipy already loaded its own (see above)."""
    want = core_type_choice()
    lib = private_instance(want) if want and loaded_openblas_path() else None
    private = lib is not None
    lib = lib or scipy_openblas(want)
    if lib is not None:
        set_threads(lambda n: lib.scipy_openblas_set_num_threads(ctypes.c_int(n)))
        out = {g: ctypes.cast(getattr(lib, f"scipy_{g}_"), ctypes.c_void_p).value for g in ROUTINES}
        out["blas_threads_local"] = _threads_local(lib)
        _openblas_used.update(lib=lib, private=private)
        return out
    with _environment("OPENBLAS_CORETYPE", want or None):
        from scipy.linalg import cython_blas
    set_threads(_set_scipy_threads)
    out = {g: _capsule_ptr(cython_blas.__pyx_capi__[g]) for g in ROUTINES}
    path = loaded_openblas_path()
    lib = ctypes.CDLL(path) if path else None
    out["blas_threads_local"] = _threads_local(lib)
    _openblas_used.update(lib=lib, private=False)
    return out


def scipy_openblas(core_type: str = ""):
    """scipy's own OpenBLAS (the library scipy.linalg links: the same instance if scipy
    loaded it already), opened by path without importing scipy.linalg, whose import
    was 0.12 s of a process's first compile; loaded with `core_type` when this loads
    it first. None when scipy bundles no such library (a scipy built against another
    BLAS: the caller then asks scipy.linalg.cython_blas) or a small product through
    it comes out wrong."""
    path = loaded_openblas_path() or _bundled_openblas_path()
    if not path:
        return None
    try:
        with _environment("OPENBLAS_CORETYPE", core_type or None):
            lib = ctypes.CDLL(path)
    except OSError:
        return None
    return lib if _products_agree(lib) else None


def _bundled_openblas_path() -> str:
    """scipy.libs/libscipy_openblas-<hash>.so beside the scipy package (found without
    importing scipy), or "" unless there is exactly one."""
    import glob
    import importlib.util
    try:
        spec = importlib.util.find_spec("scipy")
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.submodule_search_locations:
        return ""
    site = os.path.dirname(os.path.abspath(list(spec.submodule_search_locations)[0]))
    found = glob.glob(os.path.join(site, "scipy.libs", "libscipy_openblas-*.so*"))
    return found[0] if len(found) == 1 else ""


def _products_agree(lib) -> bool:
    """The library's sgemm and dgemm (Fortran convention, as the generated code calls
    them) multiply right (blas_call.wrong_product): the symbols are the functions they
    are named after, with 32-bit integers."""
    from .blas_call import wrong_product
    try:
        addresses = {g: ctypes.cast(getattr(lib, f"scipy_{g}_"), ctypes.c_void_p).value for g in ROUTINES}
    except AttributeError:
        return False
    return wrong_product(addresses) is None


def _threads_local(lib) -> int:
    """Address of the library's openblas_set_num_threads_local (OpenBLAS >= 0.3.27).
    Without one, the C library's `int abs(int)`: the same signature and no effect."""
    try:
        return ctypes.cast(lib.openblas_set_num_threads_local, ctypes.c_void_p).value
    except (AttributeError, TypeError):
        return ctypes.cast(ctypes.CDLL(None).abs, ctypes.c_void_p).value


def configured_threads() -> int:
    """NNGRAPH_BLAS_THREADS, default one per physical core (codegen/tuning.py)."""
    from codegen.host import host_facts
    from codegen.tuning import blas_threads
    return blas_threads(host_facts(), os.environ)


def host_core_type(vector_bits: int, vendor: str) -> str:
    """The OpenBLAS core type for a host with `vector_bits`-wide vectors from `vendor`
    ("" below AVX2: OpenBLAS's own detection)."""
    if vector_bits >= 512:
        return "SkylakeX"
    if vector_bits >= 256:
        return "Zen" if vendor == "AuthenticAMD" else "Haswell"
    return ""


def core_type_choice() -> str:
    """The core type to load with, or "" to leave the environment's. With AVX-512
    turned off (NNGRAPH_CPU_FEATURES=-avx512f) on an AVX-512 CPU, "unset" with nothing
    pinned and an AVX-512 type asked for both give the AVX2 type: OpenBLAS would
    otherwise pick SkylakeX from cpuid, and the hold to AVX2 would break."""
    from codegen.host import avx512_turned_off
    want = os.environ.get("NNGRAPH_BLAS_CORETYPE", "").strip()
    if not want or want.lower() == "inherit":
        pinned = os.environ.get("OPENBLAS_CORETYPE", "").strip()
        return avx2_core_type() if not pinned and avx512_turned_off() else ""
    has512 = host_has_avx512()
    if want.lower() == "host":
        from codegen.host import host_facts
        return host_core_type(512 if has512 else min(256, host_facts().vector_bits), host_vendor())
    if want.lower() in AVX512_TYPES and not has512:      # would crash on a CPU without AVX-512
        return avx2_core_type() if avx512_turned_off() else ""
    return want


def avx2_core_type() -> str:
    """OpenBLAS's AVX2 core type for this CPU's vendor (Haswell, Zen on AMD): what
    holds OpenBLAS to AVX2 here and in benchmarks/isa.py."""
    return host_core_type(256, host_vendor())


def host_has_avx512() -> bool:
    from codegen.host import host_facts
    return host_facts().vector_bits >= 512


def host_vendor() -> str:
    from codegen.host import host_facts
    return host_facts().vendor


def loaded_openblas_path() -> str:
    """Path of scipy's OpenBLAS if this process has it mapped, else ""."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return ""     # no /proc: load scipy's as usual (the variable then acts if it is not loaded yet)
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1].strip()
        if os.path.basename(path).startswith("libscipy_openblas-") and \
                not os.path.basename(os.path.dirname(path)).startswith("blas-"):
            return path           # scipy's own, not a private copy of ours
    return ""


@functools.lru_cache(maxsize=None)
def private_instance(core_type: str):
    """nngraph's own instance of scipy's OpenBLAS, loaded with `core_type`, from a copy
    in the cache directory (a library is loaded once per path). None if scipy's
    library cannot be found or copied: the caller then uses scipy's instance."""
    src = loaded_openblas_path()
    if not src or not os.path.isfile(src):
        return None
    try:
        dst = _verified_copy(src)
        with _environment("OPENBLAS_CORETYPE", core_type):
            return ctypes.CDLL(dst, mode=os.RTLD_LOCAL | os.RTLD_NOW)
    except OSError:
        return None


def _verified_copy(src: str) -> str:
    """A byte-identical copy of `src` under the cache directory: written atomically
    (temp file + rename), compared byte for byte before every use, replaced if not."""
    from codegen.cache import trusted_dir
    st = os.stat(src)
    tag = hashlib.sha256(f"{src}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    base = trusted_dir()
    if base is None:   # a library others could swap is never loaded: use scipy's instance
        raise OSError("the cache directory is not private to this user")
    folder = os.path.join(str(base), f"blas-{tag}")
    dst = os.path.join(folder, os.path.basename(src))
    if os.path.isfile(dst) and filecmp.cmp(src, dst, shallow=False):
        return dst
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if not filecmp.cmp(src, dst, shallow=False):
        raise OSError(f"copy of {src} at {dst} does not match")
    return dst


def set_threads(setter) -> None:
    """Thread count of the BLAS instance nngraph calls. Default: one thread per
    physical core (MLP 784-512-256-10 inference b128 on 2 cores: 0.74 ms with
    OpenBLAS's own two threads, 1.41 ms on one thread, 0.90 ms split by our code
    across two threads). One call of the generated code uses threads_per_call() of
    them: one where nngraph's worker pool splits the products (codegen/tuning.py
    blas_call_threads), so OpenBLAS's spinning workers never wait on the pool's cores."""
    setter(configured_threads())


def _set_scipy_threads(n: int) -> None:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    for lib in ThreadpoolController().lib_controllers:
        if os.path.basename(lib.filepath or "").startswith("libscipy_openblas-"):
            lib.set_num_threads(n)


class _environment:
    """os.environ[name] = value (None: unchanged) inside the block, restored after."""

    def __init__(self, name: str, value):
        self.name, self.value = name, value

    def __enter__(self):
        self.old = os.environ.get(self.name)
        if self.value is not None:
            os.environ[self.name] = self.value
        return self

    def __exit__(self, *exc):
        if self.value is not None:
            if self.old is None:
                os.environ.pop(self.name, None)
            else:
                os.environ[self.name] = self.old
        return False


def _capsule_ptr(capsule) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    name_fn = ctypes.pythonapi.PyCapsule_GetName
    name_fn.restype = ctypes.c_char_p
    name_fn.argtypes = [ctypes.py_object]
    return get(capsule, name_fn(capsule))
