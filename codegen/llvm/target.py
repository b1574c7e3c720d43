"""The host target: LLVM initialisation, the target machine for this CPU, the
optimisation pipeline, and turning IR text into object code and assembly.

One TargetMachine per process (host CPU name and features), so `-O3` vectorises
for what this machine has (AVX2/AVX-512). Object code produced here is what the
disk cache stores; loaded.py maps it into memory. What describes the target without
LLVM (triple, CPU, features, target_id) is in target_spec.py, re-exported here.
"""
from __future__ import annotations

import functools
import threading

import llvmlite.binding as llvm

from codegen.host import check_against_llvm, llvm_host

from .target_spec import (LLVM_OPTIONS, PIPELINE, feature_enabled, features, has_feature, prefer_width_features,  # noqa: F401
                          target_id, triple)
from . import mapped
from .symbols import register, registered, runtime_symbols

_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _init() -> None:
    """LLVM started for this process: the native target, our options, the recorded
    host description checked against LLVM's (codegen/host.py: llvm_host), and the external symbols
    the generated code calls (loaded.py) made known to it."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    for opt in LLVM_OPTIONS:
        llvm.set_option("nngraph", opt)
    if not check_against_llvm():
        features.cache_clear()
        has_feature.cache_clear()
    runtime_symbols()
    for name, addr in registered.items():      # those registered before LLVM was loaded
        llvm.add_symbol(name, addr)


@functools.lru_cache(maxsize=None)
def target_machine():
    """The process's TargetMachine for optimising and emitting code."""
    return _new_target_machine()


def _new_target_machine():
    _init()
    host = llvm_host()
    target = llvm.Target.from_triple(host["triple"])
    return target.create_target_machine(cpu=host["cpu"], features=features(), opt=dict(PIPELINE)["codegen_level"],
                                        reloc="default", codemodel="jitdefault", jit=True)


@functools.lru_cache(maxsize=None)
def data_layout() -> str:
    # read once: llvmlite's TargetMachine.target_data must not be fetched twice
    return str(target_machine().target_data)


@functools.lru_cache(maxsize=None)
def target_data():
    """Sizes and alignments of the host layout (from the data layout string)."""
    return llvm.create_target_data(data_layout())


def register_blas(addresses: dict) -> None:
    """Make object code loaded from now on call the BLAS of `addresses` (blas.py's
    gemm_addresses form) as nngraph_sgemm, nngraph_dgemm, nngraph_blas_threads_local.
    Code loaded earlier keeps the functions it was linked to."""
    for name, addr in addresses.items():
        register(f"nngraph_{name}", addr)


# ----------------------------------------------------------------------------- compile

def optimize(ir_text: str):
    """Parse, verify and run the pipeline of target_spec.PIPELINE; returns the ModuleRef.

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
    pb = llvm.create_pass_builder(tm, pipeline_tuning_options())
    pb.getModulePassManager().run(mod, pb)
    return mod


def pipeline_tuning_options():
    """llvmlite's PipelineTuningOptions as target_spec.PIPELINE gives them."""
    settings = dict(PIPELINE)
    pto = llvm.create_pipeline_tuning_options(speed_level=settings["speed_level"])
    for name in ("loop_vectorization", "slp_vectorization", "loop_unrolling"):
        setattr(pto, name, settings[name])
    return pto


def emit_object(mod) -> bytes:
    with _lock:
        return bytes(target_machine().emit_object(mod))


def emit_assembly(mod) -> str:
    with _lock:
        return target_machine().emit_assembly(mod)


def mcjit_engine(obj: bytes):
    """An MCJIT engine holding a compiled program's `obj` (loaded.py, for an object
    elf_loader does not handle), on a TargetMachine like the compile target's."""
    _init()
    return mapped.mcjit_engine(obj, _new_target_machine(), lock=_lock)
