"""codegen/llvm/elf_loader.py on damaged object code: what it does not handle goes to
MCJIT (UnsupportedObject), never a crash. Each test changes two random bytes (seeded)
of one part of a real object (the worker pool's, and test_elf_loader's) many times
and loads every copy in a subprocess, which must end normally with each copy either
loaded or refused: no signal (a write outside the mapped memory), no other exception.

Loaded copies are not run: a change to a value that is in range (an addend, an
offset within its section) makes other code that no loader can tell from the real
one; the compile cache's sha256 is what keeps such damage out."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import ctypes, random, sys
from codegen.llvm.elf_loader import LoadedImage, UnsupportedObject, _parse, process_symbol
from codegen.llvm import eh_frame, target, thread_pool
import tests.codegen.test_elf_loader as t

which, part, cases = sys.argv[1], sys.argv[2], int(sys.argv[3])
if which == "pool":
    mod = thread_pool.build_module(8, 1000)
    obj = bytes(thread_pool._pool_machine().emit_object(__import__("llvmlite.binding").binding.parse_assembly(str(mod))))
    names = {f"nngraph_pool_libc_{n}": process_symbol(n) for n in thread_pool.LIBC_FUNCTIONS}
    resolve = lambda name: names.get(name, 0)
else:
    obj = t._object()
    resolve = lambda name: t.SCALE_ADDR if name == "nngraph_test_scale" else 0
sections, symtab, _ = _parse(obj)
if part == "headers":
    import struct
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    lo, hi = shoff, shoff + 64 * len(sections)
elif part == "symtab":
    lo, hi = symtab.offset, symtab.offset + symtab.size
elif part == "eh_frame":
    frames, = [s for s in sections if s.name == ".eh_frame"]
    lo, hi = frames.offset, frames.offset + frames.size
else:
    rela = [s for s in sections if s.type == 4]
    lo, hi = min(s.offset for s in rela), max(s.offset + s.size for s in rela)
LoadedImage(obj, resolve)                   # the undamaged object loads
rng = random.Random(f"{which} {part}")
outcome = {"loaded": 0, "refused": 0}
for case in range(cases):
    copy = bytearray(obj)
    for _ in range(2):
        copy[rng.randrange(lo, hi)] = rng.randrange(256)
    print("case", case, flush=True)
    try:
        image = LoadedImage(bytes(copy), resolve)
        for address in image.defined.values():      # the unwinder reads the tables
            eh_frame.function_start(address)
        outcome["loaded"] += 1
    except UnsupportedObject:
        outcome["refused"] += 1
print("outcome", outcome["loaded"], outcome["refused"], flush=True)
"""


@pytest.mark.parametrize("which,part", [("pool", "rela"), ("pool", "headers"), ("pool", "symtab"),
                                        ("test", "rela"), ("test", "headers"), ("pool", "eh_frame")])
def test_damaged_object_is_loaded_or_refused_never_a_crash(which, part):
    cases = 150
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", CHILD, which, part, str(cases)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    last = [line for line in run.stdout.splitlines() if line.startswith("case")][-1:]
    assert run.returncode == 0, f"{which} {part}: exit {run.returncode} at {last}\n{run.stderr[-3000:]}"
    loaded, refused = map(int, run.stdout.splitlines()[-1].split()[1:])
    assert loaded + refused == cases and refused > 0


def _edit_section(obj: bytearray, name: str, field: str, value: int) -> None:
    """Sets one field of the named section's header (ELF64 Shdr layout)."""
    import struct
    from codegen.llvm.elf_loader import _parse
    at = {"type": (4, "<I"), "flags": (8, "<Q"), "offset": (24, "<Q"), "info": (44, "<I")}[field]
    sections, _, _ = _parse(bytes(obj))
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    index = next(i for i, s in enumerate(sections) if s.name == name)
    struct.pack_into(at[1], obj, shoff + 64 * index + at[0], value)


def _sections(obj):
    from codegen.llvm.elf_loader import _parse
    return _parse(bytes(obj))


def _refused(obj, match):
    from codegen.llvm.elf_loader import LoadedImage, UnsupportedObject
    from tests.codegen.test_elf_loader import SCALE_ADDR
    with pytest.raises(UnsupportedObject, match=match):
        LoadedImage(bytes(obj), lambda name: SCALE_ADDR if name == "nngraph_test_scale" else 0)


@pytest.mark.parametrize("name,field,value,match", [
    (".rela.ltext", "type", 9, "SHT_REL relocations"),
    (".rela.ltext", "info", 99, "relocates section index 99"),
    (".rela.ltext", "info", 8, "relocates '.note.GNU-stack', a section that is not loaded"),
    (".ltext", "flags", 0x10000007, "both writable and executable"),
    (".lbss", "flags", 0x10000403, "thread-local section .lbss"),
    (".ltext", "offset", 1 << 40, "past the"),
])
def test_what_the_loader_does_not_know_is_refused(name, field, value, match):
    from tests.codegen.test_elf_loader import _object
    obj = bytearray(_object())
    _edit_section(obj, name, field, value)
    _refused(obj, match)


def _symbol_fields(obj, name):
    """Offset in `obj` of the symbol table entry of `name`."""
    from codegen.llvm.elf_loader import _symbols
    _, symtab, strtab = _sections(obj)
    index = next(i for i, sym in enumerate(_symbols(bytes(obj), symtab, strtab)) if sym[0] == name)
    return symtab.offset + 24 * index


def test_a_symbol_in_a_section_not_loaded_is_refused_where_used():
    import struct
    from tests.codegen.test_elf_loader import _object
    obj = bytearray(_object())
    note = next(i for i, s in enumerate(_sections(obj)[0]) if s.name == ".note.GNU-stack")
    struct.pack_into("<H", obj, _symbol_fields(obj, "lookup") + 6, note)     # an export
    _refused(obj, "'lookup' defined in a section that is not loaded")
    obj = bytearray(_object())
    sections, symtab, _ = _sections(obj)
    lrodata = next(i for i, s in enumerate(sections) if s.name == ".lrodata")
    for at in range(symtab.offset, symtab.offset + symtab.size, 24):       # what a relocation uses
        if struct.unpack_from("<H", obj, at + 6)[0] == lrodata:
            struct.pack_into("<H", obj, at + 6, note)
    _refused(obj, "in a section not loaded")


@pytest.mark.parametrize("field,value,match", [
    ("offset", None, "writes 8 bytes at .*, outside .ltext"),           # None: at .ltext's end
    ("symbol", 999, "symbol 999 of"),
])
def test_a_relocation_out_of_range_is_refused(field, value, match):
    import struct
    from tests.codegen.test_elf_loader import _object
    obj = bytearray(_object())
    sections = _sections(obj)[0]
    rela = next(s for s in sections if s.name == ".rela.ltext")
    value = sections[rela.info].size if value is None else value
    first_r64 = next(at for at in range(rela.offset, rela.offset + rela.size, 24)
                     if struct.unpack_from("<I", obj, at + 8)[0] == 1)
    if field == "offset":
        struct.pack_into("<Q", obj, first_r64, value)
    else:
        struct.pack_into("<I", obj, first_r64 + 12, value)
    _refused(obj, match)


def test_unwind_tables_the_check_refuses_refuse_the_object():
    """Tables eh_frame.check_frames refuses (here a CIE of version 7) are never given to
    the unwinder: the object is UnsupportedObject, for MCJIT, not loaded."""
    from tests.codegen.test_elf_loader import _object
    obj = bytearray(_object())
    frames = next(s for s in _sections(obj)[0] if s.name == ".eh_frame")
    obj[frames.offset + 8] = 7                  # the first CIE's version
    _refused(obj, "damaged object code: FrameError: .eh_frame CIE at 0: version 7")
