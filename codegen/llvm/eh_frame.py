"""The unwind tables (.eh_frame) of object code that elf_loader.py maps: checked, then
registered with the process's unwinder (libgcc's __register_frame), and deregistered
before the code is unmapped.

Why: without them an unwinder that reaches a generated function's frame stops there
(backtrace() ends, a C++ exception thrown by a function the generated code calls
terminates the process, a profiler's stack walk is cut). MCJIT registers the same
tables (LLVM's RTDyldMemoryManager calls __register_frame), so a mapped image now
behaves like MCJIT's copy.

Why checked first: the unwinder trusts what it is given; libgcc parses every entry's
header on its first search (GCC 12) or at registration (GCC 13 on), anywhere in the
process. So each record's length, each FDE's CIE pointer, each CIE's version,
augmentation ("zR" or none, as LLVM emits for code without a personality routine) and
pointer encoding, and each FDE's code range (within the image's code) are checked here;
anything else is a FrameError (elf_loader's UnsupportedObject: MCJIT instead). The call-frame
instructions themselves are read only while unwinding through that very function.

The tables must end with a zero-length record, as a linked program's do (crtend.o);
elf_loader.py reserves 4 zero bytes after the section for it. Without libgcc_s
(another C library's unwinder) nothing is registered.
"""
from __future__ import annotations

import ctypes
import functools
import struct

TERMINATOR_BYTES = 4


class FrameError(ValueError):
    """Tables this check does not pass (elf_loader turns it into UnsupportedObject)."""

CIE_VERSIONS = (1, 3)
DW_EH_PE_OMIT, DW_EH_PE_PCREL = 0xFF, 0x10
# value formats (the low 4 bits of an encoding) this check reads: absptr, udata4, udata8, sdata4, sdata8
FORMATS = {0x0: "<Q", 0x3: "<I", 0x4: "<Q", 0xB: "<i", 0xC: "<q"}


def check_frames(data: bytes, address: int, code: tuple[int, int]) -> None:
    """Checks the relocated tables `data`, mapped at `address`, whose FDEs must cover
    only [code[0], code[1]); FrameError naming the first record that fails."""
    pos, cies = 0, {}
    while pos < len(data):
        length, = _unpack("<I", data, pos, pos + 4, "a record's length")
        if length == 0:
            return                              # the terminator: the unwinder stops here too
        end = pos + 4 + length
        if length == 0xFFFFFFFF or length < 4 or end > len(data):
            raise FrameError(f".eh_frame record at {pos}: length {length:#x} in {len(data)} bytes")
        cie_id, = _unpack("<I", data, pos + 4, end, "a CIE pointer")
        if cie_id == 0:
            cies[pos] = _cie_encoding(data, pos + 8, end, pos)
        elif pos + 4 - cie_id not in cies:
            raise FrameError(f".eh_frame FDE at {pos}: its CIE pointer {cie_id:#x} names no CIE before it")
        else:
            _check_fde(data, pos + 8, end, address, cies[pos + 4 - cie_id], code)
        pos = end
    raise FrameError(".eh_frame without its zero-length terminator")


def _cie_encoding(data: bytes, pos: int, end: int, at: int) -> int:
    """The FDE pointer encoding a CIE declares (absptr when it has no 'R')."""
    version = _unpack("<B", data, pos, end, "a CIE version")[0]
    nul = data.find(b"\0", pos + 1, end)
    if version not in CIE_VERSIONS or nul < 0:
        raise FrameError(f".eh_frame CIE at {at}: version {version}, augmentation unterminated: {nul < 0}")
    augmentation = data[pos + 1:nul]
    if augmentation not in (b"", b"zR"):
        raise FrameError(f".eh_frame CIE at {at}: augmentation {augmentation!r} (only 'zR' or none)")
    pos = _leb(data, _leb(data, nul + 1, end), end)           # code, data alignment factors
    pos = pos + 1 if version == 1 else _leb(data, pos, end)    # return address register
    if not augmentation:
        return 0
    pos = _leb(data, pos, end)                                 # augmentation data length
    encoding = _unpack("<B", data, pos, end, "a pointer encoding")[0]
    if encoding & 0x0F not in FORMATS or encoding & 0x70 not in (0, DW_EH_PE_PCREL):
        raise FrameError(f".eh_frame CIE at {at}: pointer encoding {encoding:#x}")
    return encoding


def _check_fde(data: bytes, pos: int, end: int, address: int, encoding: int, code: tuple[int, int]) -> None:
    fmt = FORMATS[encoding & 0x0F]
    begin, = _unpack(fmt, data, pos, end, "an FDE's start")
    span, = _unpack(fmt, data, pos + struct.calcsize(fmt), end, "an FDE's length")
    if encoding & DW_EH_PE_PCREL:
        begin = (begin + address + pos) & (2**64 - 1)
    if begin and not (code[0] <= begin and begin + span <= code[1]):
        raise FrameError(f".eh_frame FDE at {pos - 8}: code {begin:#x}+{span:#x} outside the "
                                f"image's code {code[0]:#x}..{code[1]:#x}")


def _unpack(fmt: str, data: bytes, pos: int, end: int, what: str) -> tuple:
    if pos + struct.calcsize(fmt) > end:
        raise FrameError(f".eh_frame: {what} at {pos} past its record's end {end}")
    return struct.unpack_from(fmt, data, pos)


def _leb(data: bytes, pos: int, end: int) -> int:
    """The position after the LEB128 number at `pos` (its value is not needed here)."""
    while pos < end:
        pos += 1
        if not data[pos - 1] & 0x80:
            return pos
    raise FrameError(f".eh_frame: a LEB128 number past its record's end {end}")


@functools.cache
def _unwinder():
    """libgcc_s's (__register_frame, __deregister_frame, _Unwind_Find_FDE), loaded once;
    None where the process has no libgcc_s."""
    try:
        lib = ctypes.CDLL("libgcc_s.so.1")
        functions = (lib.__register_frame, lib.__deregister_frame, lib._Unwind_Find_FDE)
    except (OSError, AttributeError):
        return None
    for fn in functions:
        fn.restype, fn.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    functions[2].argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return functions


def register(address: int):
    """Registers the checked tables at `address` (ending with their terminator); returns
    what undoes it (call it before the tables or their code are unmapped), or None
    with no unwinder to register them with."""
    functions = _unwinder()
    if functions is None:
        return None
    functions[0](address)
    return functools.partial(functions[1], address)


class _Bases(ctypes.Structure):
    _fields_ = [("tbase", ctypes.c_void_p), ("dbase", ctypes.c_void_p), ("func", ctypes.c_void_p)]


def function_start(pc: int) -> int | None:
    """The start of the function whose registered FDE covers `pc` (the unwinder's own
    search, _Unwind_Find_FDE), or None: what a test or a debugging session asks."""
    functions = _unwinder()
    if functions is None:
        return None
    bases = _Bases()
    return bases.func if functions[2](pc, ctypes.byref(bases)) else None
