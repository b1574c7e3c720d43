"""The names of the generated module's globals that the runtime looks up after
loading its object code (the entry point and the per-kernel profile counters), and
the external functions that code calls (registered by name, resolved when an object
is loaded). Kept apart from entry.py (which makes the names) so that loading stored
object code imports no IR builder, and from target.py so that it loads no LLVM."""
from __future__ import annotations

import functools
import sys

ENTRY = "nngraph_entry"      # int32 (void **buffers, int64 *sizes): 0, or 1 + the failing kernel
PROFILE = "nngraph_prof"     # int64[kernels]: accumulated ns per kernel (NNGRAPH_PROFILE=1 builds)

# name -> address of every external function the generated code calls (BLAS, the
# worker pool, clock_gettime), for loaders of object code (loaded.py)
registered: dict = {}


def register(name: str, addr: int) -> None:
    """Object code loaded from now on calls `addr` for `name` (LLVM is told too when it
    is loaded: target.py tells it what was registered before)."""
    registered[name] = addr
    llvm = sys.modules.get("llvmlite.binding")
    if llvm is not None:
        llvm.add_symbol(name, addr)


def resolve(name: str) -> int:
    """The address object code gets for `name`: as LLVM resolves it when LLVM is loaded
    (what llvm.add_symbol set, else the process's own symbols), else what was
    registered here; 0 when unknown."""
    llvm = sys.modules.get("llvmlite.binding")
    if llvm is not None:
        return llvm.address_of_symbol(name) or registered.get(name, 0)
    return registered.get(name, 0)


@functools.lru_cache(maxsize=None)
def runtime_symbols() -> None:
    """Register the functions generated code calls, by name: BLAS gemm/gemv and the
    per-thread thread count (blas.py), pthread_create/join (the worker pool, or the C
    library's with NNGRAPH_THREAD_POOL=0) and clock_gettime. Needs no LLVM."""
    from . import blas, thread_pool
    from .elf_loader import process_symbol
    for name, addr in blas.gemm_addresses().items():
        register(f"nngraph_{name}", addr)
    register("nngraph_clock_gettime", process_symbol("clock_gettime"))
    for name, addr in thread_pool.thread_symbols().items():
        register(f"nngraph_{name}", addr)
