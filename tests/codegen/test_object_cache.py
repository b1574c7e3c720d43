"""codegen/llvm/object_cache.py: object code made once, then read from the disk cache
(verified: a damaged entry is made again), keyed by a description of what it is made
from; the worker pool's code goes through it, and a new process neither builds its
IR nor emits it again."""
import ctypes
import os
import subprocess
import sys
import textwrap

import llvmlite.binding as llvm
import pytest

from codegen import cache
from codegen.llvm import target
from codegen.llvm.object_cache import SUFFIX, cached_object, entry_key

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IR = """
define i64 @nngraph_test_twice(i64 %x) {
  %y = mul i64 %x, 2
  ret i64 %y
}
"""


class CountingMachine:
    """A target machine that counts the objects it emits."""

    def __init__(self):
        target._init()
        self.tm = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(opt=0, jit=True)
        self.emitted = 0

    def __call__(self):          # cached_object asks for the machine only on a miss
        return self

    def emit_object(self, mod):
        self.emitted += 1
        return self.tm.emit_object(mod)


@pytest.fixture
def cache_at(tmp_path, monkeypatch):
    d = tmp_path / "objcache"
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(d))
    return d


def _run(obj: bytes, x: int) -> int:
    tm = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(opt=0, jit=True)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(engine.get_function_address("nngraph_test_twice"))(x)


class CountingIR:
    """IR text made on request, counted (a hit builds none)."""

    def __init__(self, text=IR):
        self.text, self.made = text, 0

    def __call__(self):
        self.made += 1
        return self.text


def test_made_once_then_read_from_the_cache(cache_at):
    tm, ir = CountingMachine(), CountingIR()
    first = cached_object("twice|O0", ir, tm)
    again = cached_object("twice|O0", ir, tm)
    assert tm.emitted == 1 and ir.made == 1 and again == first
    assert _run(again, 21) == 42
    assert (cache_at / f"{entry_key('twice|O0')}{SUFFIX}").exists()


def test_another_description_is_another_entry(cache_at):
    tm = CountingMachine()
    cached_object("twice|O0", CountingIR(), tm)
    cached_object("twice|O2", CountingIR(), tm)
    cached_object("thrice|O0", CountingIR(IR.replace("2", "3")), tm)
    assert tm.emitted == 3


def test_a_damaged_entry_is_made_again_and_rewritten(cache_at):
    tm = CountingMachine()
    good = cached_object("twice|O0", CountingIR(), tm)
    path = cache_at / f"{entry_key('twice|O0')}{SUFFIX}"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF                       # the checksum no longer matches
    path.write_bytes(bytes(data))
    assert cached_object("twice|O0", CountingIR(), tm) == good and tm.emitted == 2
    assert cache.load(entry_key("twice|O0"), SUFFIX) == good


def test_a_new_process_loads_the_worker_pool_from_the_cache(cache_at):
    """The first process builds the pool's IR and makes its object code; the next one
    does neither."""
    src = textwrap.dedent("""
        import llvmlite.binding as llvm
        from codegen.llvm import thread_pool
        emitted, built = [], []
        emit, build = llvm.TargetMachine.emit_object, thread_pool.build_module
        llvm.TargetMachine.emit_object = lambda self, mod: emitted.append(1) or emit(self, mod)
        thread_pool.build_module = lambda *args: built.append(1) or build(*args)
        from codegen.llvm import target
        target._init()                          # builds the pool (registers its symbols)
        assert thread_pool.pool_enabled()
        print(len(emitted), len(built))
    """)
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(cache_at), PYTHONPATH=ROOT)
    counts = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", src], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        counts.append(r.stdout.split()[-2:])
    assert counts == [["1", "1"], ["0", "0"]]
