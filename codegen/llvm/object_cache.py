"""Object code of a module every process builds the same way, through the disk
cache (codegen/cache.py), for a module whose machine code each process would
otherwise make again at its first compile or compile-cache hit: the worker pool
(thread_pool.py: ~10 ms of code generation, ~0.3 ms from the cache)."""
from __future__ import annotations

import llvmlite.binding as llvm

from codegen import cache


def cached_object(ir_text: str, tm, tm_id: str) -> bytes:
    """Object code of `ir_text` emitted by target machine `tm`; `tm_id` describes
    everything besides the IR that the code depends on (triple, optimisation level,
    llvmlite and LLVM versions). Keyed by both (cache.key), checksummed, read only
    from a directory only this user can write; made and stored on a miss."""
    k = cache.key(ir_text, tm_id)
    obj = cache.load(k)
    if obj is None:
        mod = llvm.parse_assembly(ir_text)
        mod.verify()
        obj = bytes(tm.emit_object(mod))
        cache.store(k, obj)
    return obj
