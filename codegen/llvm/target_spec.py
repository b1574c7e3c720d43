"""The target generated code is for, described without loading LLVM: the host's
features as LLVM names them (recorded per host, codegen/host.py: llvm_host) with
NNGRAPH_CPU_FEATURES's changes and the vector width chosen, and `target_id`, what
object code depends on besides the IR (the compile caches' keys). target.py
re-exports these; a compile-cache hit asks them without starting LLVM.
"""
from __future__ import annotations

import functools

from codegen.host import llvm_host

# LLVM command-line options set once per process (they are global to LLVM; target.py
# sets them). Masked interleaved accesses: a loop whose rows are shorter than the vector width
# is vectorised with its tail folded under a mask; without this option LLVM turned
# its strided accesses (pooling windows, stride 2) into gathers and scatters, with
# it they stay wide loads and stores plus shuffles (max-pool backward 310 -> 48 us).
LLVM_OPTIONS = ("-enable-masked-interleaved-mem-accesses",)

# The optimisation pipeline target.optimize runs (llvmlite's PipelineTuningOptions
# with the TargetMachine's codegen level): part of target_id, so that object code made
# under another pipeline is made again rather than read from the disk cache. The
# generated IR is scalar (no vector types): the loop vectoriser makes the vector code.
# Unrolling off halves compile time; interleaving keeps reductions fast. Measured on
# the LeNet, MLP and LSTM steps' IR (Xeon, AVX-512): speed level 2, the SLP
# vectoriser off or codegen level 2 each changed compile time by under 5%.
PIPELINE = (("speed_level", 3), ("loop_vectorization", True), ("slp_vectorization", True),
            ("loop_unrolling", False), ("codegen_level", 3))


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
    from codegen.host import effective_feature_text
    from codegen.tuning import tuning
    return ",".join([effective_feature_text(), prefer_width_features(tuning().vector_bits)])


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


def target_id() -> str:
    """What object code depends on besides the IR: triple, CPU, features, llvmlite,
    LLVM's options and the pipeline (PIPELINE)."""
    import llvmlite
    host = llvm_host()
    pipeline = ",".join(f"{name}={value}" for name, value in PIPELINE)
    return "|".join([host["triple"], host["cpu"], features(), llvmlite.__version__, host["llvm"]]
                    + list(LLVM_OPTIONS) + [pipeline])


def triple() -> str:
    return llvm_host()["triple"]
