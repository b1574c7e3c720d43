"""codegen/llvm/object_cache.py: object code made once, then read from the disk cache
(verified: a damaged entry is made again), keyed by the IR text and the target
machine's description; the worker pool's code goes through it."""
import ctypes
import os
import subprocess
import sys
import textwrap

import llvmlite.binding as llvm
import pytest

from codegen import cache
from codegen.llvm import target
from codegen.llvm.object_cache import cached_object

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


def test_made_once_then_read_from_the_cache(cache_at):
    tm = CountingMachine()
    first = cached_object(IR, tm, "test|O0")
    again = cached_object(IR, tm, "test|O0")
    assert tm.emitted == 1 and again == first
    assert _run(again, 21) == 42
    assert (cache_at / f"{cache.key(IR, 'test|O0')}.lib").exists()


def test_another_machine_or_other_ir_is_another_entry(cache_at):
    tm = CountingMachine()
    cached_object(IR, tm, "test|O0")
    cached_object(IR, tm, "test|O2")
    cached_object(IR.replace("2", "3"), tm, "test|O0")
    assert tm.emitted == 3


def test_a_damaged_entry_is_made_again_and_rewritten(cache_at):
    tm = CountingMachine()
    good = cached_object(IR, tm, "test|O0")
    path = cache_at / f"{cache.key(IR, 'test|O0')}.lib"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF                       # the checksum no longer matches
    path.write_bytes(bytes(data))
    assert cached_object(IR, tm, "test|O0") == good and tm.emitted == 2
    assert cache.load(cache.key(IR, "test|O0"), ".lib") == good


def test_a_new_process_loads_the_worker_pool_from_the_cache(cache_at):
    """The first process makes the pool's object code; the next one emits nothing."""
    src = textwrap.dedent("""
        import llvmlite.binding as llvm
        from codegen.llvm import thread_pool
        emitted = []
        emit = llvm.TargetMachine.emit_object
        llvm.TargetMachine.emit_object = lambda self, mod: emitted.append(1) or emit(self, mod)
        from codegen.llvm import target
        target._init()                          # builds the pool (registers its symbols)
        assert thread_pool.pool_enabled()
        print(len(emitted))
    """)
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(cache_at), PYTHONPATH=ROOT)
    counts = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", src], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        counts.append(int(r.stdout.split()[-1]))
    assert counts == [1, 0]
