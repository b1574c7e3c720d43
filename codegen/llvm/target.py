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


def prefer_width_features(bits: int) -> str:
    """LLVM tuning features that make the loop vectoriser use `bits`-wide vectors
    (LLVM's tuning for AVX-512 Intel CPUs otherwise prefers 256)."""
    if bits >= 512:
        return "-prefer-128-bit,-prefer-256-bit"
    return "-prefer-128-bit,+prefer-256-bit" if bits == 256 else "+prefer-128-bit"


@functools.lru_cache(maxsize=None)
def features() -> str:
    """The host CPU's features, NNGRAPH_CPU_FEATURES's changes (codegen/host.py) and
    the vector width chosen by codegen/tuning.py."""
    from codegen.host import feature_overrides
    from codegen.tuning import tuning
    _init()
    return ",".join([llvm.get_host_cpu_features().flatten()] + feature_overrides()
                    + [prefer_width_features(tuning().vector_bits)])


@functools.lru_cache(maxsize=None)
def has_feature(name: str) -> bool:
    """Whether code is generated for a CPU with LLVM feature `name` (the host's, as
    NNGRAPH_CPU_FEATURES changes it)."""
    return feature_enabled(features(), name)


def feature_enabled(feature_list: str, name: str) -> bool:
    """Whether `name` is on in an LLVM feature list ("+avx2,-avx512f,..."): its last
    mention wins, as in LLVM (the overrides come after the host's features)."""
    on = False
    for item in feature_list.split(","):
        if item[1:] == name:
            on = item[0] == "+"
    return on


@functools.lru_cache(maxsize=None)
def target_machine():
    """The process's TargetMachine for optimising and emitting code."""
    return _new_target_machine()


def _new_target_machine():
    _init()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=features(),
                                        opt=3, reloc="default", codemodel="jitdefault", jit=True)


def target_id() -> str:
    """What object code depends on besides the IR: triple, CPU, features, llvmlite."""
    _init()
    return "|".join([llvm.get_process_triple(), llvm.get_host_cpu_name(), features(), llvmlite.__version__,
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

def _register_symbols() -> None:
    """External functions the generated code calls, by name: BLAS gemm (blas.py),
    pthread_create/join (the worker pool of thread_pool.py, or the C library's with
    NNGRAPH_THREAD_POOL=0) and clock_gettime from the C library."""
    from . import blas, thread_pool
    register_blas(blas.gemm_addresses())
    libc = ctypes.CDLL(None)
    llvm.add_symbol("nngraph_clock_gettime", ctypes.cast(libc.clock_gettime, ctypes.c_void_p).value)
    for name, addr in thread_pool.thread_symbols().items():
        llvm.add_symbol(f"nngraph_{name}", addr)


def register_blas(addresses: dict) -> None:
    """Make object code loaded from now on call the BLAS of `addresses` (blas.py's
    gemm_addresses form) as nngraph_sgemm, nngraph_dgemm, nngraph_blas_threads_local.
    Code loaded earlier keeps the functions it was linked to."""
    for name, addr in addresses.items():
        llvm.add_symbol(f"nngraph_{name}", addr)


# ----------------------------------------------------------------------------- compile

def optimize(ir_text: str):
    """Parse, verify and run the O3 pipeline (vectorisers on); returns the ModuleRef.

    Each call leaves about 90 KB in llvmlite (0.50) that nothing can free: its
    PassBuilder allocates PassInstrumentationCallbacks it never deletes, each run adds
    the callbacks of a StandardInstrumentations to them, and building the default
    pipeline leaks about 30 KB even when the pass manager is disposed. Sharing one
    PassBuilder would not help and is unsafe (the callbacks of a finished run point to
    its dead instrumentation object). Object code from the disk cache skips this step;
    the engines of dropped Functions are freed (tests/runtime/test_memory_returned.py)."""
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
