"""The host target: LLVM initialisation, the target machine for this CPU, the
optimisation pipeline, and turning IR text into object code and assembly.

One TargetMachine per process (host CPU name and features), so `-O3` vectorises
for what this machine has (AVX2/AVX-512). Object code produced here is what the
disk cache stores; `load_object` maps it into memory with MCJIT.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading

import llvmlite
import llvmlite.binding as llvm

_lock = threading.Lock()

# LLVM command-line options set once per process (they are global to LLVM).
# Masked interleaved accesses: a loop whose rows are shorter than the vector width
# is vectorised with its tail folded under a mask; without this option LLVM turned
# its strided accesses (pooling windows, stride 2) into gathers and scatters, with
# it they stay wide loads and stores plus shuffles (max-pool backward 310 -> 48 us).
LLVM_OPTIONS = ("-enable-masked-interleaved-mem-accesses",)


@functools.lru_cache(maxsize=None)
def _init() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    for opt in LLVM_OPTIONS:
        llvm.set_option("nngraph", opt)
    _register_symbols()


@functools.lru_cache(maxsize=None)
def target_machine():
    """The process's TargetMachine for optimising and emitting code."""
    return _new_target_machine()


def _new_target_machine():
    _init()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, reloc="default", codemodel="jitdefault", jit=True)


def target_id() -> str:
    """What object code depends on besides the IR: triple, CPU, features, llvmlite."""
    _init()
    return "|".join([llvm.get_process_triple(), llvm.get_host_cpu_name(),
                     llvm.get_host_cpu_features().flatten(), llvmlite.__version__,
                     ".".join(map(str, llvm.llvm_version_info))] + list(LLVM_OPTIONS))


@functools.lru_cache(maxsize=None)
def data_layout() -> str:
    # read once: llvmlite's TargetMachine.target_data must not be fetched twice
    return str(target_machine().target_data)


@functools.lru_cache(maxsize=None)
def target_data():
    """Sizes and alignments of the host layout (from the data layout string)."""
    return llvm.create_target_data(data_layout())


def triple() -> str:
    _init()
    return llvm.get_process_triple()


# ----------------------------------------------------------------------------- symbols

def _capsule_ptr(capsule) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    name_fn = ctypes.pythonapi.PyCapsule_GetName
    name_fn.restype = ctypes.c_char_p
    name_fn.argtypes = [ctypes.py_object]
    return get(capsule, name_fn(capsule))


def _register_symbols() -> None:
    """External functions the generated code calls, by name: BLAS gemm from
    scipy's cython_blas, pthread_create/join from the C library."""
    with _openblas_avx512():
        from scipy.linalg import cython_blas
    for name in ("sgemm", "dgemm"):
        llvm.add_symbol(f"nngraph_{name}", _capsule_ptr(cython_blas.__pyx_capi__[name]))
    _single_threaded_blas()
    libc = ctypes.CDLL(None)
    for name in ("pthread_create", "pthread_join", "clock_gettime"):
        llvm.add_symbol(f"nngraph_{name}", ctypes.cast(getattr(libc, name), ctypes.c_void_p).value)


class _openblas_avx512:
    """Which OpenBLAS core type nngraph's own copy of OpenBLAS (scipy's, loaded only
    by the generated code) uses. Why: an environment that pins OPENBLAS_CORETYPE to an
    AVX2 type (this project's machine pins Haswell) runs sgemm at about half the speed
    of the AVX-512 kernels on an AVX-512 CPU (128x784 @ 784x512 on one thread: 950 us
    vs 510 us; MLP 784-512-256-10 SGD step 1.89 ms vs 1.22 ms). nngraph already
    targets the host CPU's features for its own kernels; its BLAS follows.

    NNGRAPH_BLAS_CORETYPE unset: when OPENBLAS_CORETYPE names a pre-AVX-512 type and
    the CPU has AVX-512, load with SkylakeX; otherwise leave OpenBLAS's choice.
    NNGRAPH_BLAS_CORETYPE=<name>: that core type. NNGRAPH_BLAS_CORETYPE=inherit: the
    environment's OPENBLAS_CORETYPE as it is. The variable is restored after loading;
    NumPy's OpenBLAS is never touched. Does nothing when the library is already loaded
    or the CPU lacks AVX-512 for an AVX-512 core type."""

    AVX512 = ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd")
    AVX512_TYPES = ("skylakex", "cooperlake", "sapphirerapids")

    def __enter__(self):
        self.old = None
        self.set = False
        want = self.choice()
        if not want or _scipy_openblas_loaded():
            return self
        self.old = os.environ.get("OPENBLAS_CORETYPE")
        os.environ["OPENBLAS_CORETYPE"] = want
        self.set = True
        return self

    def choice(self) -> str:
        """The core type to load with, or "" to leave the environment's."""
        want = os.environ.get("NNGRAPH_BLAS_CORETYPE", "")
        if want.lower() == "inherit":
            return ""
        has512 = self.host_has_avx512()
        if not want:
            pinned = os.environ.get("OPENBLAS_CORETYPE", "")
            return "SkylakeX" if pinned and pinned.lower() not in self.AVX512_TYPES and has512 else ""
        return want if has512 or want.lower() not in self.AVX512_TYPES else ""

    def host_has_avx512(self) -> bool:
        feats = llvm.get_host_cpu_features()
        return all(feats.get(f, False) for f in self.AVX512)

    def __exit__(self, *exc):
        if self.set:
            if self.old is None:
                os.environ.pop("OPENBLAS_CORETYPE", None)
            else:
                os.environ["OPENBLAS_CORETYPE"] = self.old
        return False


def _scipy_openblas_loaded() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return "libscipy_openblas-" in f.read()
    except OSError:
        return True      # cannot tell: leave the library's own choice alone


def _single_threaded_blas() -> None:
    """Set the thread count of scipy's private OpenBLAS (the one cython_blas calls;
    NumPy's copy is left alone). Default: one thread per core, measured best on a
    quiet machine (MLP 784-512-256-10 inference b128: 0.74 ms with OpenBLAS's own two
    threads, 1.41 ms on one thread, 0.90 ms split by our code across two threads).
    On a machine whose cores are busy with other work, OpenBLAS's spinning workers
    can cost 10x; NNGRAPH_BLAS_THREADS=1 is the remedy there."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    n = int(os.environ.get("NNGRAPH_BLAS_THREADS", str(os.cpu_count() or 1)))
    for lib in ThreadpoolController().lib_controllers:
        if os.path.basename(lib.filepath or "").startswith("libscipy_openblas-"):
            lib.set_num_threads(n)


# ----------------------------------------------------------------------------- compile

def optimize(ir_text: str):
    """Parse, verify and run the O3 pipeline (vectorisers on); returns the ModuleRef."""
    tm = target_machine()
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = False     # halves compile time; interleaving keeps reductions fast
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def emit_object(mod) -> bytes:
    with _lock:
        return bytes(target_machine().emit_object(mod))


def emit_assembly(mod) -> str:
    with _lock:
        return target_machine().emit_assembly(mod)


class LoadedObject:
    """Object code mapped into this process; keeps the engine alive while used."""

    def __init__(self, obj: bytes):
        _init()
        with _lock:
            # the engine takes ownership of its TargetMachine: give it its own
            self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_target_machine())
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            self.engine.finalize_object()

    def address(self, name: str) -> int:
        addr = self.engine.get_function_address(name)
        if not addr:
            raise RuntimeError(f"symbol {name!r} not found in compiled object")
        return addr
