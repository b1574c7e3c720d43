"""A script run in a process of its own on the host's instruction set or on AVX2
emulated by NNGRAPH_CPU_FEATURES=-avx512f (features are read once per process), for
the tests that check generated code at each vector width."""
import os
import subprocess
import sys

import pytest

from codegen import host

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST_AVX512 = "avx512f" in host.cpuinfo().get("flags", "").split()


def run_at_isa(script: str, isa: str, cache_dir, timeout: int = 600, args=()) -> str:
    """The stdout of `python -c script *args` with isa "host" or "avx2" (skipped on a host
    without AVX-512, whose own run is the AVX2 one), compiling into cache_dir."""
    if isa == "avx2" and not HOST_AVX512:
        pytest.skip("the host has no AVX-512: its own run is the AVX2 one")
    env = dict(os.environ, NNGRAPH_CPU_FEATURES="" if isa == "host" else "-avx512f",
               NNGRAPH_CACHE_DIR=str(cache_dir), PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p.stdout
