"""What machine a benchmark ran on, printed with its figures (the CPU differs between
runs: an AVX-512 Intel one time, an AVX2 AMD the next). /proc/cpuinfo is read by
codegen/host.py's `cpuinfo`, the one reader nngraph's thresholds use too."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from codegen.host import cpuinfo  # noqa: E402  (the repository, above this folder)

VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile")


def cpu_model() -> str:
    """The CPU's model name (what lscpu prints), or "unknown CPU"."""
    return cpuinfo().get("model name", "unknown CPU")


def cpu_flags() -> list:
    """The vector extensions of VECTOR_FLAGS the CPU has, in that order."""
    have = set(cpuinfo().get("flags", "").split())
    return [x for x in VECTOR_FLAGS if x in have]
