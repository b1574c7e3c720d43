"""Object code of a module every process builds the same way, through the disk
cache (codegen/cache.py), for a module whose machine code each process would
otherwise make again at its first compile or compile-cache hit: the worker pool
(thread_pool.py: ~10 ms of building IR and code generation, ~0.3 ms from the cache)."""
from __future__ import annotations

from codegen import cache

SUFFIX = ".lib"     # apart from compiled programs' <key>.o entries


def entry_key(description: str) -> str:
    return cache.key(description, "object cache")


def cached_object(description: str, make_ir, machine) -> bytes:
    """Object code of the IR text `make_ir()` returns, emitted by the target machine
    `machine()` makes; both are called only on a miss (a hit builds no IR and loads no
    LLVM). `description` names everything the code depends on: the source of the
    code that builds the IR and its parameters, the target (triple, optimisation
    level, llvmlite and LLVM versions). Keyed by it (entry_key), checksummed, read
    only from a directory only this user can write; made and stored on a miss."""
    k = entry_key(description)
    obj = cache.load(k, SUFFIX)
    if obj is None:
        import llvmlite.binding as llvm
        mod = llvm.parse_assembly(make_ir())
        mod.verify()
        obj = bytes(machine().emit_object(mod))
        cache.store(k, obj, SUFFIX)
    return obj
