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
