"""CPU code generation: Program -> LLVM IR (llvmlite.ir) -> optimised object code
for the host CPU -> one native entry point.

    compiled = compile_program(program, check_numerics=False)
    rc = compiled.entry(bufs_pointer_array_address, sizes_array_address)

Files: irtypes (types), scalar + mathfns (the scalar-op table), loops (function
builder), kernel (LoopKernel), matmul (BLAS calls), conv_direct (direct convolutions), entry (schedule, threads,
numerics checks), target (LLVM pipeline, object code, asm), symbols (the names the
runtime looks up), loaded + elf_loader (object code mapped into the process). Object
code is cached on disk by codegen.cache. Loading stored object code (`load_program`,
a compile-cache hit) imports none of the IR builders and does not load LLVM: this
module imports `entry` and `target` only when it builds code.
"""
from __future__ import annotations

import ctypes
import os
import time

import numpy as np

from codegen import cache
from passes.program import symbols as program_symbols

from . import blas
from .loaded import LoadedObject
from .symbols import ENTRY, PROFILE

ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)


class CompiledProgram:
    """Native code of one Program. `entry(bufs, sizes)` (addresses) returns 0 or
    1 + the index of the kernel that produced a non-finite value.

    `stats["blas"]`: which BLAS its products call (codegen/llvm/blas.py: describe).
    `stats["seconds"]`: where the time went, by stage (llvm_ir: building the IR text;
    object_cache: looking the object up in the disk cache; llvm_optimize; machine_code: emitting the object;
    load: mapping it into the process). Made from a stored object (`load_program`), it
    has no IR text until a dump asks for it (rebuilt then from the Program)."""

    def __init__(self, program, obj, options, library_calls, seconds, cache_hit, ir_text=None, mod=None):
        t0 = time.perf_counter()
        self.program = program
        self.options = options        # build_module's keywords: check_numerics, threads, profile
        self._ir_text = ir_text
        self.symbols = program_symbols(program)
        self.object_code = obj       # what the compile cache stores with the Program
        self.loaded = LoadedObject(obj)
        self.address = self.loaded.address(ENTRY)
        self.entry = ENTRY_TYPE(self.address)
        seconds = dict(seconds, load=time.perf_counter() - t0)
        self.stats = {"codegen_seconds": sum(seconds.values()), "cache_hit": cache_hit,
                      "library_calls": library_calls, "object_bytes": len(obj), "seconds": seconds,
                      "blas": blas.describe()}
        self._opt = mod
        self.n_kernels = len(program.schedule)
        self.profiled = options["profile"]

    @property
    def ir_text(self) -> str:
        """The LLVM IR this object was made from (rebuilt from the Program when the
        object came from the compile cache: same Program, same settings, same text)."""
        if self._ir_text is None:
            from .entry import build_module
            self._ir_text, _ = build_module(self.program, **self.options)
        return self._ir_text

    def profile(self, reset=False):
        """Accumulated ns per kernel (NNGRAPH_PROFILE=1 builds only), or None."""
        if not self.profiled:
            return None
        addr = self.loaded.address(PROFILE)
        arr = np.ctypeslib.as_array((ctypes.c_int64 * self.n_kernels).from_address(addr))
        out = arr.copy()
        if reset:
            arr[:] = 0
        return out

    def _optimized(self):
        if self._opt is None:
            from . import target
            self._opt = target.optimize(self.ir_text)
        return self._opt

    def llvm_text(self) -> str:
        """The optimised LLVM IR (fn.dump("llvm"))."""
        return str(self._optimized())

    def asm_text(self) -> str:
        """Host assembly (fn.dump("asm"))."""
        from . import target
        return target.emit_assembly(self._optimized())


def compile_program(program, check_numerics=False, use_cache=True, threads=True, profile=None) -> CompiledProgram:
    if profile is None:
        profile = profile_requested()
    options = {"check_numerics": check_numerics, "threads": threads, "profile": profile}
    from . import target
    from .entry import build_module
    t0 = time.perf_counter()
    ir_text, info = build_module(program, **options)
    t1 = time.perf_counter()
    k = cache.key(ir_text, target.target_id())
    obj = cache.load(k) if use_cache else None
    t2 = time.perf_counter()
    seconds = {"llvm_ir": t1 - t0, "object_cache": t2 - t1}
    hit = obj is not None
    mod = None
    if not hit:
        mod = target.optimize(ir_text)
        t3 = time.perf_counter()
        obj = target.emit_object(mod)
        seconds.update(llvm_optimize=t3 - t2, machine_code=time.perf_counter() - t3)
        if use_cache:
            cache.store(k, obj)
    return CompiledProgram(program, obj, options, info["notes"].count("blas"), seconds, hit, ir_text, mod)


def load_program(program, obj: bytes, library_calls: int, check_numerics=False, profile=False) -> CompiledProgram:
    """The CompiledProgram of object code `compile_program` made for `program` with these
    options earlier (the compile cache's hit: no IR, no LLVM)."""
    options = {"check_numerics": check_numerics, "threads": True, "profile": profile}
    return CompiledProgram(program, obj, options, library_calls, {}, True)


def profile_requested() -> bool:
    """NNGRAPH_PROFILE=1 in the environment: builds count each kernel's time."""
    return os.environ.get("NNGRAPH_PROFILE", "") not in ("", "0")
