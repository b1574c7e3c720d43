"""Intel MKL as a BLAS the generated code can call (the `mkl` wheel on PyPI,
`pip install "nngraph[mkl]"`), behind the interface of codegen/llvm/blas.py: the
addresses of the Fortran sgemm_/dgemm_ (LP64: 32-bit sizes, the convention scipy's
OpenBLAS has) and of a per-thread thread-count setter.

Why: at the small-M products of a recurrent step and of an MLP, MKL's sgemm runs
1.1-2x faster than OpenBLAS on one thread of an AVX-512 Xeon (32x256x1024: 92
against 157 GFLOP/s); codegen/llvm/blas_choice.py times both on the host and keeps
the faster, so nothing here assumes it wins.

Loading. libmkl_rt is found through the wheel's file list (importlib.metadata, never
a fixed path) and loaded with RTLD_LOCAL: PyTorch's own MKL and scipy's OpenBLAS live
in the same processes, and none of them may see our symbols or we theirs. The
interface layer (LP64) and the threading layer are set before any other MKL call,
explicitly, so no MKL_INTERFACE_LAYER or MKL_THREADING_LAYER of the environment can
give the generated code 64-bit sizes or a runtime that is not there. A product
against NumPy checks the library before it is trusted.

Threading layer (NNGRAPH_MKL_THREADING):
    sequential  the default: MKL's calls run on the calling thread; big products
                are cut across threads by the generated code itself (entry.py, one
                MKL call per thread), mid-size ones run on one core. No BLAS thread
                ever waits for a busy core or spins on one our threads need.
    gnu         GNU OpenMP (the system's libgomp.so.1): mid-size products on all
                cores (32x256x1024 on 2 idle cores: 170 -> 310 GFLOP/s), but with
                the reproducible mode below skinny products collapse (LeNet's first
                convolution, 6x25 @ 25x50176: 1 GFLOP/s, the CNN step 3.5 -> 24 ms),
                and on a busy machine its threads wait for cores (MLP inference b128
                at load 12 on 2 cores: median 42 ms against 1.1 ms sequential).
    intel       Intel OpenMP (libiomp5 from the `intel-openmp` wheel, next to
                libmkl_rt); its workers spin 200 ms after each call (KMP_BLOCKTIME).
                MKL without libiomp5 ends the process on its first product, so this
                layer is refused unless the library is there.
TBB is never used (without libtbb MKL ends the process too).

Reproducible results. By default MKL's sgemm rounds a row differently depending on
how the product is cut (our threads split rows: a row of a 32x300x200 float32
product differed by up to 4e-5 between one call and three) and on alignment; a
model trained with fit(distributed=True) then drifted from the same model trained
alone (1.3e-6 relative in its validation loss after two epochs). nngraph sets MKL's
conditional numerical reproducibility to AUTO with STRICT (the CPU's own code path,
results independent of alignment and, as measured, of the cut; about as fast at our
shapes on one thread), unless the environment sets MKL_CBWR itself.
"""
from __future__ import annotations

import ctypes
import functools
import os

import numpy as np

LAYERS = {"intel": 0, "sequential": 1, "gnu": 3}   # MKL_THREADING_* of mkl_service.h
LP64 = 0                                           # MKL_INTERFACE_LP64
CBWR_AUTO_STRICT = 0x2 | 0x10000                   # MKL_CBWR_AUTO | MKL_CBWR_STRICT (mkl_cbwr.h)
ENABLE_AVX2 = 2                                    # MKL_ENABLE_AVX2 (mkl_service.h)
# MKL_CBWR_* branches (mkl_cbwr.h): what MKL_CBWR_Get_Auto_Branch says the code path is
CODE_PATHS = {4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX", 10: "AVX2", 12: "AVX512",
              14: "AVX512_E1"}
INSTALL_HINT = 'pip install "nngraph[mkl]"'


class MklUnavailable(RuntimeError):
    """MKL cannot be the BLAS here: the wheel is missing, a layer is not there, or it
    computed wrong. The message says which and what to do."""


def library_path() -> str:
    """Path of libmkl_rt from the installed `mkl` distribution's file list."""
    from .dist_version import installed_files
    for path in installed_files("mkl") or ():
        if os.path.basename(path).startswith("libmkl_rt.so") and os.path.isfile(path):
            return os.path.realpath(path)
    import importlib.metadata as md
    try:
        dist = md.distribution("mkl")
    except md.PackageNotFoundError:
        raise MklUnavailable(f"the mkl wheel is not installed ({INSTALL_HINT})") from None
    for f in dist.files or ():
        if f.name.startswith("libmkl_rt.so"):
            path = str(dist.locate_file(f))
            if os.path.isfile(path):
                return os.path.realpath(path)
    raise MklUnavailable(f"the mkl distribution {dist.version} lists no libmkl_rt.so that exists "
                         f"(reinstall it: {INSTALL_HINT})")


def version() -> str:
    from .dist_version import installed_version
    return installed_version("mkl")


def installed() -> bool:
    try:
        library_path()
    except MklUnavailable:
        return False
    return True


def threading_layer(env=None) -> str:
    """NNGRAPH_MKL_THREADING, default sequential (see the module docstring)."""
    env = os.environ if env is None else env
    raw = env.get("NNGRAPH_MKL_THREADING", "").strip().lower() or "sequential"
    if raw not in LAYERS:
        raise ValueError(f"NNGRAPH_MKL_THREADING must be one of {', '.join(sorted(LAYERS))} "
                         f"(or unset), got {raw!r}")
    return raw


def _gnu_openmp_loads() -> bool:
    try:
        ctypes.CDLL("libgomp.so.1", mode=os.RTLD_LOCAL)
    except OSError:
        return False
    return True


def _check_layer_present(layer: str, rt_path: str) -> None:
    """MKL ends the process when a layer's runtime is missing: refuse first."""
    if layer == "intel" and not os.path.isfile(os.path.join(os.path.dirname(rt_path), "libiomp5.so")):
        raise MklUnavailable("NNGRAPH_MKL_THREADING=intel needs Intel OpenMP (libiomp5.so beside "
                             f"{rt_path}): pip install intel-openmp, or use gnu or sequential")
    if layer == "gnu" and not _gnu_openmp_loads():
        raise MklUnavailable("NNGRAPH_MKL_THREADING=gnu needs GNU OpenMP (libgomp.so.1), which does not "
                             "load here; use sequential")


def layer_available(layer: str) -> bool:
    """Whether MKL is installed with the runtime its threading `layer` needs."""
    try:
        _check_layer_present(layer, library_path())
    except MklUnavailable:
        return False
    return True


@functools.lru_cache(maxsize=None)
def load(layer: str, threads: int) -> "Mkl":
    """MKL with `layer` threading and `threads` threads, checked against NumPy."""
    path = library_path()
    _check_layer_present(layer, path)
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL | os.RTLD_NOW)
    except OSError as e:
        raise MklUnavailable(f"libmkl_rt at {path} does not load: {e}") from None
    got_interface = lib.MKL_Set_Interface_Layer(ctypes.c_int(LP64))
    got_layer = lib.MKL_Set_Threading_Layer(ctypes.c_int(LAYERS[layer]))
    if got_interface != LP64 or got_layer != LAYERS[layer]:
        # someone in this process set MKL up before us (another user of this libmkl_rt)
        raise MklUnavailable(f"MKL at {path} was already set up with interface {got_interface}, threading "
                             f"{got_layer}; nngraph needs LP64 (0) and {layer} ({LAYERS[layer]})")
    if held_to_avx2() and lib.MKL_Enable_Instructions(ctypes.c_int(ENABLE_AVX2)) != 1:
        raise MklUnavailable(f"MKL at {path} refused to be held to AVX2 (MKL_Enable_Instructions), "
                             "which NNGRAPH_CPU_FEATURES turning AVX-512 off asks for")
    if not os.environ.get("MKL_CBWR", "").strip():
        rc = lib.MKL_CBWR_Set(ctypes.c_int(CBWR_AUTO_STRICT))
        if rc != 0:                  # MKL_CBWR_SUCCESS
            raise MklUnavailable(f"MKL at {path} refused reproducible mode (MKL_CBWR_Set: {rc})")
    lib.MKL_Set_Num_Threads(ctypes.c_int(max(1, threads)))
    mkl = Mkl(lib, layer, threads, path)
    mkl.verify()
    return mkl


def held_to_avx2() -> bool:
    """Whether nngraph holds MKL to AVX2 itself: NNGRAPH_CPU_FEATURES turns off the
    CPU's AVX-512 and the environment sets no MKL_ENABLE_INSTRUCTIONS (MKL reads that
    itself; a user's value is left alone)."""
    from codegen.host import avx512_turned_off
    return not os.environ.get("MKL_ENABLE_INSTRUCTIONS", "").strip() and avx512_turned_off()


class Mkl:
    """A loaded, checked MKL: `addresses` in blas.gemm_addresses' form."""

    def __init__(self, lib, layer, threads, path):
        self.lib, self.layer, self.threads, self.path = lib, layer, threads, path
        addr = lambda name: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value  # noqa: E731
        # MKL_Set_Num_Threads_Local(n): n threads for MKL calls made by the calling
        # thread from now on (0: back to the global count); returns the previous
        # thread-local count. The generated code ignores the result.
        self.addresses = {"sgemm": addr("sgemm_"), "dgemm": addr("dgemm_"),
                          "sgemv": addr("sgemv_"), "dgemv": addr("dgemv_"),
                          "blas_threads_local": addr("MKL_Set_Num_Threads_Local")}

    def describe(self) -> str:
        cnr = os.environ.get("MKL_CBWR", "").strip() or "AUTO,STRICT"
        threads = "sequential" if self.layer == "sequential" else \
            f"{self.layer} threading, {self.threads} thread{'s' * (self.threads > 1)}"
        held = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "").strip() or ("AVX2" if held_to_avx2() else "")
        return f"mkl {version()} ({threads}, MKL_CBWR={cnr}{f', MKL_ENABLE_INSTRUCTIONS={held}' if held else ''})"

    def code_path(self) -> str:
        """The instruction set MKL's kernels run here (its reproducibility branch for
        AUTO, e.g. "AVX2" or "AVX512_E1"): how a cap is checked to have taken effect."""
        branch = self.lib.MKL_CBWR_Get_Auto_Branch()
        return CODE_PATHS.get(branch, f"branch {branch}")

    def verify(self) -> None:
        """Small products with every transpose against NumPy: a library that loads but
        computes wrong (a broken install, a foreign setup) is refused, never used."""
        from .blas_call import wrong_product
        wrong = wrong_product(self.addresses)
        if wrong is not None:
            raise MklUnavailable(f"MKL at {self.path} computed {wrong}; it is not used")
