"""Object code mapped into this process, and the external functions it is linked to.

A compiled function's object code (made by target.py, or read from the compile
cache) is mapped by elf_loader.py, without LLVM; an object that loader does not
handle goes to LLVM's MCJIT (target.mcjit_engine). Either way its undefined names
resolve through symbols.resolve: the BLAS the products call (blas.py), the worker
pool's thread functions (thread_pool.py) and clock_gettime, registered once per
process by symbols.runtime_symbols, which needs no LLVM either: a compile-cache hit
in a new process loads none.
"""
from __future__ import annotations

from .mapped import MappedObject
from .symbols import resolve, runtime_symbols


class LoadedObject(MappedObject):
    """A compiled program's object code mapped into this process (or in MCJIT), its
    undefined names resolved through the runtime's registered symbols."""

    def __init__(self, obj: bytes):
        runtime_symbols()
        super().__init__(obj, resolve, _mcjit)


def _mcjit(obj: bytes):
    from .target import mcjit_engine
    return mcjit_engine(obj)
