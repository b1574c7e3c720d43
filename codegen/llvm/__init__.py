"""CPU code generation: Program -> LLVM IR (llvmlite.ir) -> optimised object code
for the host CPU -> one native entry point.

    compiled = compile_program(program, check_numerics=False)
    rc = compiled.entry(bufs_pointer_array_address, sizes_array_address)

Files: irtypes (types), scalar + mathfns (the scalar-op table), loops (function
builder), kernel (LoopKernel), matmul (BLAS calls), entry (schedule, threads,
numerics checks), target (LLVM pipeline, object code, asm). Object code is cached
on disk by codegen.cache.
"""
from __future__ import annotations

import ctypes
import os
import time

import numpy as np

from codegen import cache

from . import target
from .entry import ENTRY, PROFILE, build_module

ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)


class CompiledProgram:
    """Native code of one Program. `entry(bufs, sizes)` (addresses) returns 0 or
    1 + the index of the kernel that produced a non-finite value."""

    def __init__(self, program, ir_text, obj, info, seconds, cache_hit, mod=None):
        self.program = program
        self.ir_text = ir_text
        self.symbols = info["symbols"]
        self.loaded = target.LoadedObject(obj)
        self.address = self.loaded.address(ENTRY)
        self.entry = ENTRY_TYPE(self.address)
        self.stats = {"codegen_seconds": seconds, "cache_hit": cache_hit,
                      "library_calls": info["notes"].count("blas"), "object_bytes": len(obj)}
        self._opt = mod
        self.n_kernels = len(program.schedule)
        self.profiled = info.get("profile", False)

    def profile(self, reset=False):
        """Accumulated ns per kernel (NNGRAPH_PROFILE=1 builds only), or None."""
        if not self.profiled:
            return None
        addr = self.loaded.engine.get_global_value_address(PROFILE)
        arr = np.ctypeslib.as_array((ctypes.c_int64 * self.n_kernels).from_address(addr))
        out = arr.copy()
        if reset:
            arr[:] = 0
        return out

    def _optimized(self):
        if self._opt is None:
            self._opt = target.optimize(self.ir_text)
        return self._opt

    def llvm_text(self) -> str:
        """The optimised LLVM IR (fn.dump("llvm"))."""
        return str(self._optimized())

    def asm_text(self) -> str:
        """Host assembly (fn.dump("asm"))."""
        return target.emit_assembly(self._optimized())


def compile_program(program, check_numerics=False, use_cache=True, threads=True, profile=None) -> CompiledProgram:
    t0 = time.perf_counter()
    if profile is None:
        profile = os.environ.get("NNGRAPH_PROFILE", "") not in ("", "0")
    ir_text, info = build_module(program, check_numerics=check_numerics, threads=threads, profile=profile)
    info["profile"] = profile
    k = cache.key(ir_text, target.target_id())
    obj = cache.load(k) if use_cache else None
    hit = obj is not None
    mod = None
    if not hit:
        mod = target.optimize(ir_text)
        obj = target.emit_object(mod)
        if use_cache:
            cache.store(k, obj)
    return CompiledProgram(program, ir_text, obj, info, time.perf_counter() - t0, hit, mod)
