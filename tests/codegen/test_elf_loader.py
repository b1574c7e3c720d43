"""codegen/llvm/elf_loader.py maps object code without LLVM: the code it maps computes
what MCJIT's copy computes (constants, data, calls to registered functions, every
relocation type target.py's objects hold); an object it does not handle is refused with
UnsupportedObject, and loaded.LoadedObject then uses MCJIT."""
import ctypes

import llvmlite.binding as llvm
import numpy as np
import pytest

from codegen.llvm import loaded, mapped, target
from codegen.llvm.elf_loader import LoadedImage, UnsupportedObject

IR = r"""
@table = internal constant [4 x double] [double 1.5, double -2.0, double 0.25, double 8.0]
@counter = internal global i64 0
declare double @nngraph_test_scale(double)

define double @lookup(i64 %i) {
  %p = getelementptr [4 x double], [4 x double]* @table, i64 0, i64 %i
  %v = load double, double* %p
  %s = call double @nngraph_test_scale(double %v)
  %c = load i64, i64* @counter
  %c1 = add i64 %c, 1
  store i64 %c1, i64* @counter
  ret double %s
}

define i64 @calls() {
  %c = load i64, i64* @counter
  ret i64 %c
}

define void @fill(float* %out, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%next, %loop]
  %f = sitofp i64 %i to float
  %v = fmul float %f, 0x3FF8000000000000
  %p = getelementptr float, float* %out, i64 %i
  store float %v, float* %p
  %next = add i64 %i, 1
  %done = icmp eq i64 %next, %n
  br i1 %done, label %end, label %loop
end:
  ret void
}
"""

SCALE = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(lambda x: 3.0 * x)
SCALE_ADDR = ctypes.cast(SCALE, ctypes.c_void_p).value


def _object(codemodel="jitdefault", reloc="default", opt=3) -> bytes:
    target._init()
    tm = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=target.features(), opt=opt, reloc=reloc, codemodel=codemodel, jit=True)
    mod = llvm.parse_assembly(IR)
    mod.verify()
    return bytes(tm.emit_object(mod))


def _use(lookup_addr, calls_addr, fill_addr):
    lookup = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)(lookup_addr)
    calls = ctypes.CFUNCTYPE(ctypes.c_int64)(calls_addr)
    fill = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)(fill_addr)
    got = [lookup(i) for i in range(4)]
    out = np.zeros(37, np.float32)
    fill(out.ctypes.data, out.size)
    return got, calls(), out


@pytest.mark.parametrize("codemodel", ["jitdefault", "large"])      # what target.py emits
def test_mapped_code_computes_what_mcjit_computes(codemodel):
    obj = _object(codemodel, reloc="static")
    image = LoadedImage(obj, lambda name: SCALE_ADDR if name == "nngraph_test_scale" else 0)
    got, calls, out = _use(image.address("lookup"), image.address("calls"), image.address("fill"))
    assert got == [4.5, -6.0, 0.75, 24.0] and calls == 4       # constants, a registered call, a global
    np.testing.assert_array_equal(out, np.arange(37, dtype=np.float32) * np.float32(1.5))
    llvm.add_symbol("nngraph_test_scale", SCALE_ADDR)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target._new_target_machine())
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    want = _use(*(engine.get_function_address(f) for f in ("lookup", "calls", "fill")))
    assert want[0] == got and want[1] == calls
    np.testing.assert_array_equal(want[2], out)


def test_what_it_does_not_map_is_refused():
    with pytest.raises(UnsupportedObject, match="not a 64-bit"):
        LoadedImage(b"not an object", lambda name: 0)
    obj = bytearray(_object())
    obj[18] = 183                                   # e_machine: AArch64
    with pytest.raises(UnsupportedObject, match="machine 183"):
        LoadedImage(bytes(obj), lambda name: 0)
    with pytest.raises(UnsupportedObject, match="undefined symbol 'nngraph_test_scale'"):
        LoadedImage(_object(), lambda name: 0)
    with pytest.raises(RuntimeError, match="'missing' not found"):
        LoadedImage(_object(), lambda name: SCALE_ADDR).address("missing")


def test_a_relocation_type_it_does_not_handle_is_refused():
    from codegen.llvm.elf_loader import _parse
    obj = bytearray(_object())
    sections, _, _ = _parse(bytes(obj))
    rela = next(sec for sec in sections if sec.type == 4 and sec.name != ".rela.eh_frame")
    obj[rela.offset + 8] = 42                      # R_X86_64_REX_GOTPCRELX
    with pytest.raises(UnsupportedObject, match="relocation type 42"):
        LoadedImage(bytes(obj), lambda name: SCALE_ADDR)


def test_an_object_it_refuses_is_loaded_by_mcjit(monkeypatch):
    def refuse(obj, resolve):
        raise UnsupportedObject("refused for the test")
    monkeypatch.setattr(mapped, "LoadedImage", refuse)
    llvm.add_symbol("nngraph_test_scale", SCALE_ADDR)
    lo = loaded.LoadedObject(_object())
    assert lo.image is None and lo.engine is not None
    got, calls, _ = _use(lo.address("lookup"), lo.address("calls"), lo.address("fill"))
    assert got == [4.5, -6.0, 0.75, 24.0] and calls == 4
    with pytest.raises(RuntimeError, match="'missing' not found"):
        lo.address("missing")


def _protection(address: int) -> str:
    """The permissions ("r-xp", ...) of the process's mapping that holds `address`."""
    with open("/proc/self/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= address < hi:
                return perms
    raise AssertionError(f"{address:#x} is not mapped")


def test_code_constants_and_data_each_get_their_own_protection():
    """Code read+execute, constants read-only (not executable), data read+write: one
    mapping each (the test object has all three)."""
    image = LoadedImage(_object(), lambda name: SCALE_ADDR if name == "nngraph_test_scale" else 0)
    assert _protection(image.address("lookup")) == "r-xp"
    assert sorted(_protection(base) for base, _, _ in image._maps) == ["r--p", "r-xp", "rw-p"]


def test_compiled_functions_are_mapped_without_mcjit():
    import nngraph as ng
    x = ng.placeholder(("N", 5), name="x")
    w = ng.parameter(np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3), name="w")
    fn = ng.compile([x], ng.tanh(x @ w).sum(axis=1), target="cpu")
    xs = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    np.testing.assert_allclose(fn(xs), np.tanh(xs @ w.value).sum(axis=1), rtol=1e-5, atol=1e-6)
    assert fn.runner.compiled.loaded.image is not None


UNWIND = r"""
import ctypes, sys
import tests.codegen.test_elf_loader as t
from codegen.llvm import eh_frame
from codegen.llvm.elf_loader import LoadedImage

libc = ctypes.CDLL(None)
frames = []

def scale(x):
    buf = (ctypes.c_void_p * 256)()
    frames.extend(buf[:libc.backtrace(buf, 256)])
    return 3.0 * x

SCALE = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(scale)
addr = ctypes.cast(SCALE, ctypes.c_void_p).value
image = LoadedImage(t._object(sys.argv[1], reloc="static"), lambda name: addr if name == "nngraph_test_scale" else 0)
code = next((base, base + size) for base, size, prot in image._maps if prot & 4)
starts = {name: image.address(name) for name in ("lookup", "calls", "fill")}
assert all(eh_frame.function_start(a + 1) == a for a in starts.values()), starts
assert ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)(starts["lookup"])(1) == -6.0
inside = [i for i, pc in enumerate(frames) if code[0] <= pc < code[1]]
assert len(inside) == 1 and inside[0] + 1 < len(frames), (inside, len(frames))
del image
assert eh_frame.function_start(starts["fill"] + 1) is None
print("ok")
"""


@pytest.mark.parametrize("codemodel", ["jitdefault", "large"])
def test_unwinder_walks_through_mapped_code_until_it_is_unmapped(codemodel):
    """The image's unwind tables are registered: the unwinder's own search finds each
    function, and backtrace() from a function the generated code calls goes on past
    the generated frame (without them it ended there); once the image is collected
    the tables are deregistered (a search would read unmapped memory). In a
    subprocess: a failure here may be a signal."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.run([sys.executable, "-c", UNWIND, codemodel], cwd=root, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=root), timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-3000:]


def _frames_of(obj):
    """(relocated .eh_frame with its terminator, its address, the code range) of `obj` mapped."""
    from codegen.llvm import eh_frame
    from codegen.llvm.elf_loader import _parse
    image = LoadedImage(obj, lambda name: SCALE_ADDR if name == "nngraph_test_scale" else 0)
    code = next((base, base + size) for base, size, prot in image._maps if prot & 4)
    frames = image._frames
    size = next(s.size for s in _parse(obj)[0] if s.name == ".eh_frame") + eh_frame.TERMINATOR_BYTES
    return image, bytearray(ctypes.string_at(frames, size)), frames, code


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.__setitem__(slice(0, 4), (0xFFFFFFFF).to_bytes(4, "little")), "length 0xffffffff"),
    (lambda d: d.__setitem__(slice(0, 4), (len(d)).to_bytes(4, "little")), "length"),
    (lambda d: d.__setitem__(slice(-4, None), b"\1\0\0\0"), "length|past"),
    (lambda d: d.__setitem__(slice(-4, None), b""), "terminator"),
    (lambda d: d.__setitem__(8, 2), "version 2"),
    (lambda d: d.__setitem__(slice(9, 11), b"zP"), "augmentation b'zP'"),
    (lambda d: d.__setitem__(0x1C, 0x20), "names no CIE"),
])
def test_unwind_tables_the_check_refuses(edit, match):
    """eh_frame.check_frames refuses what the unwinder would misread: a 64-bit or
    overlong record, no terminator, an unknown CIE version or augmentation, an FDE
    whose CIE pointer names no CIE; the real tables pass."""
    from codegen.llvm import eh_frame
    image, data, address, code = _frames_of(_object("large", reloc="static"))
    eh_frame.check_frames(bytes(data), address, code)
    edit(data)
    with pytest.raises(eh_frame.FrameError, match=match):
        eh_frame.check_frames(bytes(data), address, code)


def test_unwind_tables_must_describe_the_images_own_code():
    """An FDE for code outside the image (the unwinder would answer for another
    library's addresses) is refused, and so is the object: elf_loader's
    UnsupportedObject, MCJIT instead."""
    from codegen.llvm import eh_frame
    image, data, address, code = _frames_of(_object("large", reloc="static"))
    with pytest.raises(eh_frame.FrameError, match="outside the image's code"):
        eh_frame.check_frames(bytes(data), address, (code[0] + 64, code[1]))
    with pytest.raises(eh_frame.FrameError, match="outside the image's code"):
        eh_frame.check_frames(bytes(data), address + 4096, code)
