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
unwind tables (.eh_frame) are loaded with the constants, checked and registered with
the process's unwinder (eh_frame.py), as MCJIT registers them: backtrace(), a C++
exception or a profiler's stack walk goes on through generated code.

Memory: one reservation, in it pages for code, made read+execute once relocated,
pages for constants (the unwind tables too), made read-only, and read+write pages for
data; the tables are deregistered, then all is unmapped, when the LoadedImage is
garbage collected.

Damaged or unusual input: every offset, size and index read from the object is checked
against what holds it before it is used (a section within the file, a relocation's
write within its section, a symbol index within the symbol table), and what this
loader does not know (SHT_REL relocations, thread-local or writable code sections, a
symbol in a section it does not load that a relocation or an export needs) is
refused: the caller's fallback to MCJIT, never a write outside the mapped memory.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct

from . import eh_frame

EM_X86_64 = 62
ET_REL = 1
SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 2, 3, 4, 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR, SHF_TLS = 0x1, 0x2, 0x4, 0x400
SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2
R_64, R_PC32, R_PLT32, R_32, R_32S, R_PC64 = 1, 2, 4, 10, 11, 24
STB_LOCAL = 0
PAGE = mmap.PAGESIZE
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
SECTION_HEADER, SYMBOL, RELA_ENTRY = 64, 24, 24
ADDRESS_SPACE = 1 << 47     # x86-64 user addresses: a larger section is damage, not code
# final protection of each mapping, by what its sections are: code, constants, data
MAPPINGS = ((SHF_EXECINSTR, PROT_READ | PROT_EXEC), (0, PROT_READ), (SHF_WRITE, PROT_READ | PROT_WRITE))
WIDTH = {R_64: 8, R_PC64: 8, R_PC32: 4, R_PLT32: 4, R_32: 4, R_32S: 4}


class UnsupportedObject(ValueError):
    """Object code this loader does not map (the caller uses MCJIT)."""


class _Section:
    def __init__(self, raw: tuple, name: str):
        (self.name_off, self.type, self.flags, _, self.offset, self.size, self.link, self.info,
         self.align, self.entsize) = raw
        self.name = name
        self.address = None     # where it is mapped; None: not loaded


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
    `address(name)`: a symbol it defines. UnsupportedObject for anything it does not
    map, damaged input included."""

    def __init__(self, obj: bytes, resolve):
        self._maps = []
        try:
            self._load(obj, resolve)
        except (struct.error, IndexError, ValueError, OverflowError) as e:       # eh_frame.FrameError too
            if isinstance(e, UnsupportedObject):
                raise
            raise UnsupportedObject(f"damaged object code: {type(e).__name__}: {e}") from e

    def _load(self, obj: bytes, resolve) -> None:
        sections, symtab, strtab = _parse(obj)
        loaded = [s for s in sections if s.flags & SHF_ALLOC]
        for s in loaded:
            _check_loadable(s)
        frames = [s for s in loaded if s.name == ".eh_frame"]
        if len(frames) > 1:
            raise UnsupportedObject(f"{len(frames)} .eh_frame sections")
        self._map([([s for s in loaded if _mapping_kind(s) == kind], prot) for kind, prot in MAPPINGS], obj)
        self.defined = {}
        addresses = []
        for name, value, shndx, bind in _symbols(obj, symtab, strtab):
            addresses.append(self._symbol_address(name, value, shndx, sections, resolve))
            if shndx != SHN_UNDEF and bind != STB_LOCAL and name:
                if addresses[-1] is None:
                    raise UnsupportedObject(f"symbol {name!r} defined in a section that is not loaded")
                self.defined[name] = addresses[-1]
        for rel in sections:
            target = _relocation_target(rel, sections, symtab, loaded)
            if target is not None:
                _relocate(obj, rel, target, addresses)
        if frames and frames[0].size:
            code = next(((base, base + size) for base, size, prot in self._maps if prot & PROT_EXEC), (0, 0))
            eh_frame.check_frames(ctypes.string_at(frames[0].address, frames[0].size + eh_frame.TERMINATOR_BYTES),
                                  frames[0].address, code)
        for base, size, prot in self._maps:
            if prot != PROT_READ | PROT_WRITE and _LIBC.mprotect(base, size, prot) != 0:
                raise OSError(ctypes.get_errno(), "mprotect of generated code failed")
        if frames and frames[0].size:
            self._frames, self._deregister = frames[0].address, eh_frame.register(frames[0].address)

    def address(self, name: str) -> int:
        if name not in self.defined:
            raise RuntimeError(f"symbol {name!r} not found in compiled object")
        return self.defined[name]

    def _map(self, groups, obj: bytes) -> None:
        """Each (sections, prot) group on pages of its own (read+write until relocated;
        `prot` after), all in one reservation: a 32-bit PC-relative reference from one
        to another (.eh_frame's to the code) always reaches."""
        layouts = [_layout(sections) for sections, _ in groups]
        total = sum(size for _, size in layouts)
        if total >= ADDRESS_SPACE:
            raise UnsupportedObject(f"sections of {total} bytes")
        base = 0
        if total:
            base = _LIBC.mmap(None, total, PROT_READ | PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
            if base in (None, ctypes.c_void_p(-1).value):       # MCJIT may find the memory
                raise UnsupportedObject(f"mmap of {total} bytes failed: {os.strerror(ctypes.get_errno())}")
        for (sections, prot), (offsets, size) in zip(groups, layouts):
            if size:
                self._maps.append((base, size, prot))
            for s, off in zip(sections, offsets):
                s.address = base + off if size else 0       # empty: nothing at it is read or written
                if size and s.type != SHT_NOBITS:
                    ctypes.memmove(s.address, obj[s.offset:s.offset + s.size], s.size)
            base += size

    @staticmethod
    def _symbol_address(name, value, shndx, sections, resolve):
        """The symbol's address; None for one in a section that is not loaded (an
        error only where a relocation or an export needs it)."""
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
        section = sections[shndx]
        if section.address is None:
            return None
        if value > section.size:
            raise UnsupportedObject(f"symbol {name!r} at {value:#x}, past its section {section.name} "
                                    f"of {section.size} bytes")
        return section.address + value

    def __del__(self):
        if getattr(self, "_deregister", None) is not None:
            self._deregister()                      # before the memory it describes goes
            self._deregister = None
        for base, size, _ in getattr(self, "_maps", ()):
            _LIBC.munmap(base, size)
        self._maps = []


def _layout(sections) -> tuple[list, int]:
    """(offset of each section, bytes in whole pages) of one mapping; a non-empty
    .eh_frame is followed by its zero-length terminator (eh_frame.py)."""
    offsets, size = [], 0
    for s in sections:
        size = -(-size // max(1, s.align)) * max(1, s.align)
        offsets.append(size)
        size += s.size + (eh_frame.TERMINATOR_BYTES if s.name == ".eh_frame" and s.size else 0)
    return offsets, -(-size // PAGE) * PAGE


def _mapping_kind(section: _Section) -> int:
    """Which mapping (MAPPINGS) holds the section: code, constants or data."""
    return section.flags & (SHF_WRITE | SHF_EXECINSTR)


def _check_loadable(s: _Section) -> None:
    """Refuses a section to load that this loader would place wrongly."""
    if s.flags & SHF_TLS:
        raise UnsupportedObject(f"thread-local section {s.name}")
    if s.flags & SHF_WRITE and s.flags & SHF_EXECINSTR:
        raise UnsupportedObject(f"section {s.name} both writable and executable")
    if s.align > PAGE or s.align & (s.align - 1):
        raise UnsupportedObject(f"section {s.name} aligned to {s.align} bytes (a power of two up to {PAGE})")
    if s.size >= ADDRESS_SPACE:
        raise UnsupportedObject(f"section {s.name} of {s.size} bytes")


def _relocation_target(rel: _Section, sections, symtab: _Section, loaded):
    """The loaded section `rel` relocates; None when `rel` holds no relocations.
    Refuses what is not understood."""
    if rel.type == SHT_REL:
        raise UnsupportedObject(f"SHT_REL relocations in {rel.name}")
    if rel.type != SHT_RELA:
        return None
    if rel.info >= len(sections):
        raise UnsupportedObject(f"{rel.name} relocates section index {rel.info} of {len(sections)}")
    if rel.link >= len(sections) or sections[rel.link] is not symtab:
        raise UnsupportedObject(f"{rel.name} uses section {rel.link} as its symbol table")
    if rel.entsize != RELA_ENTRY or rel.size % RELA_ENTRY:
        raise UnsupportedObject(f"{rel.name}: entries of {rel.entsize} bytes, {rel.size} in all")
    target = sections[rel.info]
    if target in loaded:
        return target
    raise UnsupportedObject(f"{rel.name} relocates {target.name!r}, a section that is not loaded")


def _parse(obj: bytes):
    """(sections, symbol table section, its string table section) of an x86-64 ET_REL,
    each section's bytes within `obj`."""
    if obj[:4] != b"\x7fELF" or len(obj) < SECTION_HEADER or obj[4] != 2 or obj[5] != 1:
        raise UnsupportedObject("not a 64-bit little-endian ELF file")
    e_type, e_machine = struct.unpack_from("<HH", obj, 16)
    if e_type != ET_REL or e_machine != EM_X86_64:
        raise UnsupportedObject(f"ELF type {e_type}, machine {e_machine}: not an x86-64 relocatable object")
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", obj, 0x3A)
    if shentsize != SECTION_HEADER or shoff + shnum * shentsize > len(obj) or shstrndx >= shnum:
        raise UnsupportedObject(f"section headers ({shnum} of {shentsize} bytes at {shoff}, names in "
                                f"{shstrndx}) outside the {len(obj)} bytes of the object")
    raw = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    names = _Section(raw[shstrndx], "")
    _check_within(obj, names)
    sections = [_Section(r, _cstring(obj, names, r[0])) for r in raw]
    for s in sections:
        _check_within(obj, s)
    symtabs = [s for s in sections if s.type == SHT_SYMTAB]
    if len(symtabs) != 1:
        raise UnsupportedObject(f"{len(symtabs)} symbol tables")
    symtab = symtabs[0]
    if symtab.entsize != SYMBOL or symtab.size % SYMBOL or symtab.link >= shnum:
        raise UnsupportedObject(f"symbol table of {symtab.size} bytes in entries of {symtab.entsize}, "
                                f"names in section {symtab.link}")
    if sections[symtab.link].type != SHT_STRTAB:
        raise UnsupportedObject(f"symbol names in section {symtab.link}, not a string table")
    return sections, symtab, sections[symtab.link]


def _check_within(obj: bytes, s: _Section) -> None:
    if s.type != SHT_NOBITS and s.offset + s.size > len(obj):
        raise UnsupportedObject(f"section {s.name!r} ({s.size} bytes at {s.offset}) past the "
                                f"{len(obj)} bytes of the object")


def _symbols(obj: bytes, symtab: _Section, strtab: _Section):
    """(name, value, section index, binding) of each symbol, in table order."""
    for i in range(symtab.size // SYMBOL):
        name, info, _, shndx, value, _ = struct.unpack_from("<IBBHQQ", obj, symtab.offset + i * SYMBOL)
        yield _cstring(obj, strtab, name), value, shndx, info >> 4


def _relocate(obj: bytes, rel: _Section, target: _Section, addresses: list) -> None:
    for i in range(rel.size // RELA_ENTRY):
        offset, info, addend = struct.unpack_from("<QQq", obj, rel.offset + i * RELA_ENTRY)
        kind, index = info & 0xFFFFFFFF, info >> 32
        if kind not in WIDTH:
            raise UnsupportedObject(f"relocation type {kind} in {target.name}")
        if index >= len(addresses) or addresses[index] is None:
            raise UnsupportedObject(f"relocation {i} of {rel.name}: symbol {index} of {len(addresses)}"
                                    f"{'' if index >= len(addresses) else ', in a section not loaded'}")
        if target.type == SHT_NOBITS or offset + WIDTH[kind] > target.size:
            raise UnsupportedObject(f"relocation {i} of {rel.name} writes {WIDTH[kind]} bytes at {offset}, "
                                    f"outside {target.name} ({target.size} bytes)")
        _write(kind, target.address + offset, addresses[index] + addend)


def _write(kind: int, place: int, value: int) -> None:
    """Stores the relocated `value` at `place` as relocation type `kind` wants it."""
    if kind == R_64:
        ctypes.c_uint64.from_address(place).value = value & (2**64 - 1)
    elif kind == R_PC64:
        ctypes.c_uint64.from_address(place).value = (value - place) & (2**64 - 1)
    elif kind in (R_PC32, R_PLT32):
        ctypes.c_int32.from_address(place).value = _fits32(value - place, signed=True)
    else:
        ctypes.c_uint32.from_address(place).value = _fits32(value, signed=kind == R_32S) & 0xFFFFFFFF


def _fits32(v: int, signed: bool) -> int:
    lo, hi = (-2**31, 2**31 - 1) if signed else (0, 2**32 - 1)
    if not lo <= v <= hi:
        raise UnsupportedObject(f"a 32-bit relocation does not reach ({v:#x})")
    return v


def _cstring(obj: bytes, table: _Section, start: int) -> str:
    """The NUL-terminated string at `start` of the string table section `table`."""
    if table.type == SHT_NOBITS or start >= table.size:
        raise UnsupportedObject(f"a name at {start} past its string table of {table.size} bytes")
    begin, end = table.offset + start, table.offset + table.size
    return obj[begin:obj.index(b"\0", begin, end)].decode()
