"""Object code of a module every process builds the same way, through the disk
cache (codegen/cache.py), for a module whose machine code each process would
otherwise make again at its first compile or compile-cache hit: the worker pool
(thread_pool.py: ~10 ms of code generation, ~0.3 ms from the cache)."""
from __future__ import annotations

from codegen import cache

SUFFIX = ".lib"     # apart from compiled programs' <key>.o entries


def cached_object(ir_text: str, machine, tm_id: str) -> bytes:
    """Object code of `ir_text` emitted by the target machine `machine()` makes (called
    only on a miss: a hit loads no LLVM); `tm_id` describes everything besides the IR
    that the code depends on (triple, optimisation level, llvmlite and LLVM versions).
    Keyed by both (cache.key), checksummed, read only from a directory only this user
    can write; made and stored on a miss."""
    k = cache.key(ir_text, tm_id)
    obj = cache.load(k, SUFFIX)
    if obj is None:
        import llvmlite.binding as llvm
        mod = llvm.parse_assembly(ir_text)
        mod.verify()
        obj = bytes(machine().emit_object(mod))
        cache.store(k, obj, SUFFIX)
    return obj
