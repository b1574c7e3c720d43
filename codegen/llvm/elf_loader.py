"""Object code (an x86-64 ELF relocatable file, as target.py emits it) mapped into this
process without LLVM: its sections copied into memory from mmap, its relocations
applied, its symbols looked up by name.

Why: a compile-cache hit in a new process needs no compiler, only the stored machine
code in memory. Loading it with LLVM's MCJIT meant importing llvmlite's binding and
loading its 100 MB library first: about 25 ms of the ~75 ms of such a hit.

What it handles is what LLVM emits for the JIT code model on x86-64 (large: every
address an absolute 64-bit relocation): sections of code, constants, data and zeroed
data; relocations R_X86_64_64, PC32, PLT32, 32, 32S, PC64. Anything else (another
machine, a shared object, a relocation type not listed, a symbol nobody defines)
raises UnsupportedObject, and the caller loads the object with MCJIT instead. The
exception-handling frames (.eh_frame) are not loaded: nothing unwinds through
generated code (it calls C functions only, which return).

Memory: one mapping for the sections that are never written (code and constants),
made read+execute once relocated, and one read+write mapping for data; both are
unmapped when the LoadedImage is garbage collected.
"""
from __future__ import annotations

import ctypes
import mmap
import struct

EM_X86_64 = 62
ET_REL = 1
SHT_SYMTAB, SHT_RELA, SHT_NOBITS = 2, 4, 8
SHF_WRITE, SHF_ALLOC = 0x1, 0x2
SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2
R_64, R_PC32, R_PLT32, R_32, R_32S, R_PC64 = 1, 2, 4, 10, 11, 24
STB_LOCAL = 0
PAGE = mmap.PAGESIZE
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4


class UnsupportedObject(ValueError):
    """Object code this loader does not map (the caller uses MCJIT)."""


class _Section:
    def __init__(self, raw: tuple, name: str):
        (self.name_off, self.type, self.flags, _, self.offset, self.size, self.link, self.info,
         self.align, self.entsize) = raw
        self.name = name
        self.address = 0


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


_LIBC = _libc()
_PROCESS = ctypes.CDLL(None)


def process_symbol(name: str) -> int:
    """The address of a C function or variable already in the process (dlsym), or 0."""
    try:
        return ctypes.cast(getattr(_PROCESS, name), ctypes.c_void_p).value or 0
    except AttributeError:
        return 0


class LoadedImage:
    """`obj` mapped and relocated; `resolve(name)` gives the address of each name it
    does not define (0: the process's own symbol of that name, from the C library).
    `address(name)`: a symbol it defines."""

    def __init__(self, obj: bytes, resolve):
        self._maps = []
        sections, symtab, strtab = _parse(obj)
        loaded = [s for s in sections if s.flags & SHF_ALLOC and s.name != ".eh_frame"]
        for writable in (False, True):
            self._place([s for s in loaded if bool(s.flags & SHF_WRITE) == writable], obj)
        self.defined = {}
        addresses = []
        for name, value, shndx, bind in _symbols(obj, symtab, strtab):
            addresses.append(self._symbol_address(name, value, shndx, sections, resolve))
            if shndx != SHN_UNDEF and bind != STB_LOCAL and name:
                self.defined[name] = addresses[-1]
        for rel in sections:
            if rel.type == SHT_RELA and rel.info < len(sections) and sections[rel.info] in loaded:
                _relocate(obj, rel, sections[rel.info], addresses)
        for base, size, writable in self._maps:
            if not writable and _LIBC.mprotect(base, size, PROT_READ | PROT_EXEC) != 0:
                raise OSError(ctypes.get_errno(), "mprotect of generated code failed")

    def address(self, name: str) -> int:
        if name not in self.defined:
            raise RuntimeError(f"symbol {name!r} not found in compiled object")
        return self.defined[name]

    # the lookups of llvmlite's ExecutionEngine, for code written against MCJIT
    get_function_address = get_global_value_address = address

    def _place(self, sections, obj: bytes) -> None:
        offsets, size = [], 0
        for s in sections:
            size = -(-size // max(1, s.align)) * max(1, s.align)
            offsets.append(size)
            size += s.size
        if not sections or size == 0:
            return
        size = -(-size // PAGE) * PAGE
        base = _LIBC.mmap(None, size, PROT_READ | PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap for generated code failed")
        self._maps.append((base, size, bool(sections[0].flags & SHF_WRITE)))
        for s, off in zip(sections, offsets):
            s.address = base + off
            if s.type != SHT_NOBITS:
                ctypes.memmove(s.address, obj[s.offset:s.offset + s.size], s.size)

    @staticmethod
    def _symbol_address(name, value, shndx, sections, resolve) -> int:
        if shndx == SHN_UNDEF:
            if not name:
                return 0
            addr = resolve(name) or process_symbol(name)
            if not addr:
                raise UnsupportedObject(f"undefined symbol {name!r}")
            return addr
        if shndx == SHN_ABS:
            return value
        if shndx == SHN_COMMON or shndx >= len(sections):
            raise UnsupportedObject(f"symbol {name!r} in section index {shndx:#x}")
        return sections[shndx].address + value

    def __del__(self):
        for base, size, _ in getattr(self, "_maps", ()):
            _LIBC.munmap(base, size)
        self._maps = []


def _parse(obj: bytes):
    """(sections, symbol table section, its string table section) of an x86-64 ET_REL."""
    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        raise UnsupportedObject("not a 64-bit little-endian ELF file")
    e_type, e_machine = struct.unpack_from("<HH", obj, 16)
    if e_type != ET_REL or e_machine != EM_X86_64:
        raise UnsupportedObject(f"ELF type {e_type}, machine {e_machine}: not an x86-64 relocatable object")
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", obj, 0x3A)
    raw = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    names = raw[shstrndx][4]
    sections = [_Section(r, _cstring(obj, names + r[0])) for r in raw]
    symtabs = [s for s in sections if s.type == SHT_SYMTAB]
    if len(symtabs) != 1:
        raise UnsupportedObject(f"{len(symtabs)} symbol tables")
    return sections, symtabs[0], sections[symtabs[0].link]


def _symbols(obj: bytes, symtab: _Section, strtab: _Section):
    """(name, value, section index, binding) of each symbol, in table order."""
    for i in range(symtab.size // 24):
        name, info, _, shndx, value, _ = struct.unpack_from("<IBBHQQ", obj, symtab.offset + i * 24)
        yield _cstring(obj, strtab.offset + name), value, shndx, info >> 4


def _relocate(obj: bytes, rel: _Section, target: _Section, addresses: list) -> None:
    for i in range(rel.size // 24):
        offset, info, addend = struct.unpack_from("<QQq", obj, rel.offset + i * 24)
        kind, value = info & 0xFFFFFFFF, addresses[info >> 32] + addend
        place = target.address + offset
        if kind == R_64:
            ctypes.c_uint64.from_address(place).value = value & (2**64 - 1)
        elif kind == R_PC64:
            ctypes.c_uint64.from_address(place).value = (value - place) & (2**64 - 1)
        elif kind in (R_PC32, R_PLT32):
            ctypes.c_int32.from_address(place).value = _fits32(value - place, signed=True)
        elif kind in (R_32, R_32S):
            ctypes.c_uint32.from_address(place).value = _fits32(value, signed=kind == R_32S) & 0xFFFFFFFF
        else:
            raise UnsupportedObject(f"relocation type {kind} in {target.name}")


def _fits32(v: int, signed: bool) -> int:
    lo, hi = (-2**31, 2**31 - 1) if signed else (0, 2**32 - 1)
    if not lo <= v <= hi:
        raise UnsupportedObject(f"a 32-bit relocation does not reach ({v:#x})")
    return v


def _cstring(obj: bytes, start: int) -> str:
    return obj[start:obj.index(b"\0", start)].decode()
