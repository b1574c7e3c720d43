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

from .elf_loader import LoadedImage, UnsupportedObject
from .symbols import resolve, runtime_symbols


class LoadedObject:
    """Object code mapped into this process; keeps the mapping (or MCJIT engine)
    alive while used."""

    def __init__(self, obj: bytes):
        runtime_symbols()
        self.engine = None
        try:
            self.image = LoadedImage(obj, resolve)
        except UnsupportedObject:
            from .target import mcjit_engine
            self.image = None
            self.engine = mcjit_engine(obj)

    def address(self, name: str) -> int:
        if self.image is not None:
            return self.image.address(name)
        addr = self.engine.get_global_value_address(name)
        if not addr:
            raise RuntimeError(f"symbol {name!r} not found in compiled object")
        return addr
