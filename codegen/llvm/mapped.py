"""Object code in this process: mapped by elf_loader (no LLVM), or held by an MCJIT
engine where that loader refuses it (UnsupportedObject).

Why a module of its own: it knows nothing of the runtime's registered symbols, so the
worker pool (thread_pool.py), which is one of those symbols, loads its object through
the same fallback as every compiled program (loaded.py adds the registry) without an
import cycle."""
from __future__ import annotations

import contextlib

from .elf_loader import LoadedImage, UnsupportedObject


class MappedObject:
    """`obj` mapped with `resolve(name)` giving the address of each name it does not
    define, or, if elf_loader refuses it, `mcjit(obj)`'s engine (mcjit_engine with the
    caller's symbols and target machine). Keeps either alive while used."""

    def __init__(self, obj: bytes, resolve, mcjit):
        self.engine = None
        try:
            self.image = LoadedImage(obj, resolve)
        except UnsupportedObject:
            self.image = None
            self.engine = mcjit(obj)

    def address(self, name: str) -> int:
        """The address of a symbol the object defines (RuntimeError if none)."""
        if self.image is not None:
            return self.image.address(name)
        addr = self.engine.get_global_value_address(name)
        if not addr:
            raise RuntimeError(f"symbol {name!r} not found in compiled object")
        return addr


def mcjit_engine(obj: bytes, machine, symbols: dict | None = None, lock=None):
    """An MCJIT engine holding `obj`, on the TargetMachine `machine` (the engine owns
    it), `symbols` ({name: address}) told to LLVM first; LLVM's calls under `lock`."""
    import llvmlite.binding as llvm
    for name, addr in (symbols or {}).items():
        llvm.add_symbol(name, addr)
    with lock if lock is not None else contextlib.nullcontext():
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
    return engine
