"""The worker pool behind nngraph_pthread_create/join (codegen/llvm/thread_pool.py):
split kernels give the same values through it, from several Python threads at
once, in a forked child, when its slots run out and when a task splits again;
NNGRAPH_THREAD_POOL=0 registers the C library's functions."""
import ctypes
import multiprocessing
import os
import subprocess
import sys
import signal
import threading
import time

import numpy as np
import pytest

from progbuild import Dim, ProgBuilder, pointwise

N, M = Dim("N"), Dim("M")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASK = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
TIMEOUT_S = 120


def _pool():
    """(create, join, slots) of this process's pool, called through ctypes."""
    from codegen.host import host_facts
    from codegen.llvm import target, thread_pool
    target._init()
    engine = thread_pool._engine[0]
    create = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p, TASK,
                              ctypes.c_void_p)(engine.address("nngraph_pool_create"))
    join = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)(
        engine.address("nngraph_pool_join"))
    return create, join, thread_pool.slot_count(host_facts().logical_cpus)


def _split_runner(monkeypatch, n_threads=3):
    """A runner whose elementwise kernel splits into `n_threads` ranges, and its NumPy reference."""
    import codegen.llvm.entry as entry
    from codegen.llvm import compile_program
    from runtime.cpu import CpuRunner
    monkeypatch.setattr(entry, "N_THREADS", n_threads)
    monkeypatch.setattr(entry, "THREAD_WORK", 1 << 10)
    pb = ProgBuilder()
    xi = pb.buf("x", "float64", (N, M), "input")
    y = pb.buf("y", "float64", (N, M), "output")
    b = pb.body()
    x = b.load(xi, b.idx(0), b.idx(1))
    pointwise(pb, y, (N, M), b, b("tanh", b("mul", x, b("const", dtype="float64", value=0.5),
                                            dtype="float64"), dtype="float64"))
    compiled = compile_program(pb.program())
    assert "nngraph_pthread_create" in compiled.ir_text
    runner = CpuRunner(pb.program(), compiled)

    def run(x):
        (out,), _ = runner.run([x], [], {"N": x.shape[0], "M": x.shape[1]})
        return out
    return run, lambda x: np.tanh(x * 0.5)


def test_pool_is_registered_by_default():
    import llvmlite.binding as llvm
    from codegen.llvm import target, thread_pool
    target._init()
    engine = thread_pool._engine[0]
    assert llvm.address_of_symbol("nngraph_pthread_create") == engine.address("nngraph_pool_create")
    assert llvm.address_of_symbol("nngraph_pthread_join") == engine.address("nngraph_pool_join")


def test_pool_off_registers_the_c_library_functions():
    """NNGRAPH_THREAD_POOL=0: the generated code calls pthread_create/join themselves
    (checked in a fresh process, since the symbols are registered once), and a split
    kernel still gives the right values."""
    script = (
        "import ctypes, numpy as np, llvmlite.binding as llvm\n"
        "from codegen.llvm import target, thread_pool\n"
        "target._init()\n"
        "libc = ctypes.CDLL(None)\n"
        "for name in ('pthread_create', 'pthread_join'):\n"
        "    want = ctypes.cast(getattr(libc, name), ctypes.c_void_p).value\n"
        "    assert llvm.address_of_symbol('nngraph_' + name) == want, name\n"
        "assert thread_pool._engine is None\n"
        "print('plain')\n")
    env = dict(os.environ, NNGRAPH_THREAD_POOL="0", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=TIMEOUT_S, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "plain"


def test_pool_looks_up_the_c_library_through_the_loaders_one_home(monkeypatch):
    """thread_pool finds pthread_create/join and the pool's C functions with
    elf_loader.process_symbol (their one lookup), and a function the process lacks
    is an OSError naming it, not a call to address 0."""
    from codegen.llvm import elf_loader, thread_pool
    monkeypatch.setenv("NNGRAPH_THREAD_POOL", "0")
    assert thread_pool.thread_symbols() == {n: elf_loader.process_symbol(n) for n in ("pthread_create", "pthread_join")}
    monkeypatch.setattr(thread_pool, "process_symbol", lambda name: 0 if name == "pthread_join" else 1)
    with pytest.raises(OSError, match="'pthread_join'"):
        thread_pool.thread_symbols()


@pytest.mark.parametrize("raw, on", [("0", False), ("off", False), ("1", True), ("", True)])
def test_pool_setting(raw, on):
    from codegen.llvm.thread_pool import pool_enabled
    assert pool_enabled({"NNGRAPH_THREAD_POOL": raw}) is on
    assert pool_enabled({}) is True


@pytest.mark.parametrize("system, machine, supported", [
    ("Linux", "x86_64", True), ("Linux", "AMD64", True), ("Linux", "aarch64", False),
    ("Darwin", "x86_64", False), ("Windows", "AMD64", False)])
def test_pool_only_where_its_futex_call_is_futex(system, machine, supported):
    from codegen.llvm.thread_pool import pool_supported
    assert pool_supported(system, machine) is supported


def test_split_kernel_from_several_python_threads(monkeypatch):
    """Four Python threads call one compiled function at once (ctypes releases the
    GIL), so more tasks than idle workers: every result right, none hangs."""
    run, ref = _split_runner(monkeypatch)
    inputs = [np.random.default_rng(k).standard_normal((301 + k, 257)) for k in range(4)]
    errors, finished = [], []

    def caller(x):
        try:
            for _ in range(25):
                np.testing.assert_allclose(run(x), ref(x), rtol=1e-13)
            finished.append(1)
        except BaseException as e:      # reported in the main thread
            errors.append(e)
    threads = [threading.Thread(target=caller, args=(x,), daemon=True) for x in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "a call through the pool hung"
    assert not errors, errors[0]
    assert len(finished) == len(inputs)


def _child(run, x, conn):
    conn.send(run(x))
    conn.close()


def _from_forked_child(child, *args):
    """What child(*args, conn) sends back from a forked process that ends normally."""
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=child, args=args + (send,))
    p.start()
    send.close()
    try:
        assert recv.poll(TIMEOUT_S), f"the forked child ({child.__name__}) hung"
        got = recv.recv()
        p.join(TIMEOUT_S)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
    return got


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_split_kernel_in_forked_child(monkeypatch):
    """The parent's workers do not exist in a forked child: the child starts its own
    (the pool is reset at fork) and gets the right values."""
    run, ref = _split_runner(monkeypatch)
    x = np.random.default_rng(3).standard_normal((513, 129))
    np.testing.assert_allclose(run(x), ref(x), rtol=1e-13)      # the parent's workers exist now
    got = _from_forked_child(_child, run, x)
    np.testing.assert_allclose(got, ref(x), rtol=1e-13)
    np.testing.assert_allclose(run(x), ref(x), rtol=1e-13)      # the parent's pool still works


def test_more_tasks_than_slots_get_real_threads():
    """With every slot claimed, create falls back to a real thread (an even
    handle); every task runs once and every join returns."""
    create, join, slots = _pool()
    ran = []
    task = TASK(lambda arg: ran.append(arg) or None)
    handles = []
    for k in range(slots + 3):
        h = ctypes.c_int64()
        assert create(ctypes.byref(h), None, task, k + 1) == 0
        handles.append(h.value)
    assert sum(h & 1 == 0 for h in handles) >= 3
    for h in handles:
        assert join(h, None) == 0
    assert sorted(ran) == list(range(1, slots + 4))


def test_task_that_splits_again():
    """A task that itself hands tasks to the pool (a split inside a split) finishes."""
    create, join, _ = _pool()
    ran = []
    inner = TASK(lambda arg: ran.append(arg) or None)

    def outer(arg):
        hs = [ctypes.c_int64() for _ in range(3)]
        for k, h in enumerate(hs):
            assert create(ctypes.byref(h), None, inner, 10 * arg + k) == 0
        for h in hs:
            assert join(h.value, None) == 0
    outer_task = TASK(lambda arg: outer(arg) or None)
    hs = [ctypes.c_int64() for _ in range(2)]
    for k, h in enumerate(hs):
        assert create(ctypes.byref(h), None, outer_task, k + 1) == 0
    for h in hs:
        assert join(h.value, None) == 0
    assert sorted(ran) == [10, 11, 12, 20, 21, 22]


def test_split_kernel_in_child_forked_without_python(monkeypatch):
    """A fork that skips Python's at-fork hooks (the C library's fork called directly,
    as native code might): the child sees that it is not the pool's process and
    runs its ranges on real threads, with the right values."""
    run, ref = _split_runner(monkeypatch)
    x = np.random.default_rng(4).standard_normal((513, 129))
    np.testing.assert_allclose(run(x), ref(x), rtol=1e-13)      # the parent's workers exist now
    pid = ctypes.PyDLL(None).fork()          # PyDLL: the GIL stays held across the fork
    if pid == 0:
        try:
            os._exit(0 if np.allclose(run(x), ref(x), rtol=1e-13, atol=0) else 1)
        finally:
            os._exit(2)
    assert pid > 0
    deadline = time.monotonic() + TIMEOUT_S
    status = None
    while status is None and time.monotonic() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        status = code if done else None
        time.sleep(0.05)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert status is not None, "the child's split kernel hung"
    assert os.waitstatus_to_exitcode(status) == 0


def test_pool_allocates_its_stack_slots_once_per_call_not_per_spin():
    """The pool is compiled at -O0 (no mem2reg): an alloca in a loop block grows the stack
    on every turn of the spin; every alloca must sit in its function's entry block."""
    import llvmlite.ir as ir
    from codegen.llvm.thread_pool import build_module
    module = build_module(8, 1000)
    for fn in module.functions:
        for block in fn.blocks[1:]:
            assert not [i for i in block.instructions if isinstance(i, ir.AllocaInstr)], (fn.name, block.name)


def test_spin_bound_is_the_thread_start_cost_and_settable():
    """The bound is a global the waits read when they begin (benchmarks/pool_spin_ab.py
    sets it); by default the host's thread start cost (checked in a fresh process: a
    test here may clear the host facts); a task still reaches a worker and runs under
    any bound, 0 included (every wait sleeps at once)."""
    script = ("from codegen.host import host_facts\n"
              "from codegen.llvm import target, thread_pool\n"
              "target._init()\n"
              "print(thread_pool.spin_bound_ns() == int(host_facts().thread_start_ns) > 0)\n")
    p = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=ROOT),
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert p.returncode == 0 and p.stdout.strip() == "True", p.stderr[-2000:]
    from codegen.llvm import target, thread_pool
    target._init()
    before = thread_pool.spin_bound_ns()
    create, join, _ = _pool()
    seen = []
    task = TASK(lambda arg: seen.append(arg) or 0)
    try:
        for ns in (0, 1_000_000):
            thread_pool.set_spin_ns(ns)
            assert thread_pool.spin_bound_ns() == ns
            handle = ctypes.c_int64()
            assert create(ctypes.byref(handle), None, task, ns + 1) == 0
            assert handle.value & 1 == 1                              # a pool worker ran it
            assert join(handle.value, None) == 0
    finally:
        thread_pool.set_spin_ns(before)
    assert seen == [1, 1_000_001]


def test_reread_interval_is_set_alone_too():
    """set_spin_ns(ns, reread_ns=X) sets the re-read interval without an idle bound
    (it did nothing), and leaves the idle bound as it was."""
    from codegen.llvm import target, thread_pool
    target._init()
    if thread_pool._spin_word() is None:
        pytest.skip("no worker pool in this process (NNGRAPH_THREAD_POOL=0 or unsupported)")
    every = thread_pool._word("nngraph_pool_loadavg_every_ns")
    saved = (thread_pool.spin_bound_ns(), thread_pool.idle_spin_bound_ns(), every.value)
    try:
        thread_pool.set_spin_ns(saved[0], reread_ns=saved[2] + 12345)
        assert every.value == saved[2] + 12345 and thread_pool.idle_spin_bound_ns() == saved[1]
    finally:
        thread_pool.set_spin_ns(saved[0], saved[1], saved[2])
    assert every.value == saved[2]


def test_wake_up_probe_goes_through_a_worker_and_restores_the_spin_bound():
    from codegen.llvm import target, thread_pool
    target._init()
    before = thread_pool.spin_bound_ns()
    assert thread_pool.measure_wake_ns(rounds=1, per_round=2, idle_s=1e-4) > 0
    assert thread_pool.spin_bound_ns() == before


def test_hand_off_probe_goes_through_a_worker_and_leaves_the_bounds_as_they_were():
    """measure_split_ns keeps the worker awake while it measures (the spin bounds at
    AWAKE_NS) and puts the bounds back after; the worker's next wait has them (one
    more hand-off after they are restored). A hand-off is far cheaper than a thread
    start (a worker already running), however busy the machine: the warm value."""
    from codegen.host import host_facts
    from codegen.llvm import target, thread_pool
    target._init()
    before = (thread_pool.spin_bound_ns(), thread_pool.idle_spin_bound_ns())
    ns = thread_pool.measure_split_ns(rounds=2, per_round=8, gap_s=1e-4)
    assert 0 < ns <= host_facts().thread_start_ns
    assert (thread_pool.spin_bound_ns(), thread_pool.idle_spin_bound_ns()) == before


@pytest.mark.parametrize("readings, kept", [([300.0], 300.0), ([9e6, 300.0], 300.0), ([9e6, 4e6, 2e5, 5e5], 9000.0)])
def test_a_hand_off_that_waited_for_a_time_slice_is_measured_again(monkeypatch, readings, kept):
    """The worker and the caller on one CPU (a loaded machine): each hand-off waits
    for a time slice (9 ms). Measured again, further apart; never kept above the
    thread start cost (9 us here)."""
    import dataclasses
    from codegen import host
    from codegen.llvm import thread_pool
    monkeypatch.setattr(host, "host_facts", lambda: dataclasses.replace(host.HostFacts(
        "cpu", "", 2, 2, 512, 2.6, 1, 1, 1, 0.0), thread_start_ns=9000.0))
    taken = iter(readings)
    calls = []
    monkeypatch.setattr(thread_pool, "_measure_split_once", lambda *a: calls.append(a) or next(taken))
    monkeypatch.setattr(thread_pool, "SPLIT_RETRY_S", 0.0)
    assert thread_pool.measure_split_ns() == kept
    assert len(calls) == min(len(readings), thread_pool.SPLIT_ATTEMPTS)


def test_split_cost_is_measured_once_per_host_and_pool_code(tmp_path, monkeypatch):
    from codegen.host import static_facts, _facts_path, _load_measured
    from codegen.llvm import thread_pool
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(thread_pool, "measure_split_ns", lambda: 321.0)
    assert thread_pool.split_cost_ns() == 321.0
    monkeypatch.setattr(thread_pool, "measure_split_ns", lambda: 999.0)
    assert thread_pool.split_cost_ns() == 321.0                  # kept for the host
    static = static_facts()
    key = f"pool_split_ns-{thread_pool._source_digest()[:12]}"
    assert _load_measured(_facts_path(static), static)[key] == 321.0
    monkeypatch.setattr(thread_pool, "_source_digest", lambda: "f" * 64)     # the pool's code changed
    assert thread_pool.split_cost_ns() == 999.0                  # measured again

    def refuse():
        raise OSError("the worker pool handed its hand-off probe to a plain thread")
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path / "other"))
    monkeypatch.setattr(thread_pool, "measure_split_ns", refuse)
    assert thread_pool.split_cost_ns() is None                   # a split then pays a thread start


def test_thresholds_without_the_pool_follow_the_thread_start(tmp_path):
    """NNGRAPH_THREAD_POOL=0: a split starts a thread, so the thresholds are derived
    from the thread start cost (and the pool's hand-off is not measured)."""
    script = ("import os\n"
              "from codegen.host import host_facts, _facts_path, _load_measured, static_facts\n"
              "from codegen.tuning import derive, tuning\n"
              "assert tuning() == derive(host_facts(), os.environ, None)\n"
              "s = static_facts()\n"
              "print(sorted(_load_measured(_facts_path(s), s)))\n")
    env = dict(os.environ, NNGRAPH_THREAD_POOL="0", NNGRAPH_CACHE_DIR=str(tmp_path),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=TIMEOUT_S)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "['thread_start_ns']"


RACE = r"""
import os, threading, time
from codegen.llvm import thread_pool
builds, handlers = [], []
load, register_at_fork = thread_pool._load, os.register_at_fork

def slow_load(obj, libc_symbols):
    builds.append(threading.get_ident())
    time.sleep(0.05)                       # every racing thread past the check meanwhile
    return load(obj, libc_symbols)

def counted_register_at_fork(**kw):
    handlers.append(kw)
    register_at_fork(**kw)

thread_pool._load, os.register_at_fork = slow_load, counted_register_at_fork
start, got = threading.Barrier(4), []

def first_use():
    start.wait()
    got.append(thread_pool.thread_symbols())

threads = [threading.Thread(target=first_use) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert len(builds) == 1 and len(handlers) == 1, (builds, handlers)
assert all(g == got[0] for g in got) and len(got) == 4, got
assert thread_pool.measure_wake_ns(rounds=1, per_round=2, idle_s=1e-4) > 0
print("ok")
"""


def test_threads_racing_the_first_build_build_one_pool():
    """Several threads asking for the pool at once in a fresh process: one build, one
    fork handler, the same functions for all (a second build used to drop the first
    pool's mapping while its functions were registered), and the pool runs tasks."""
    p = subprocess.run([sys.executable, "-c", RACE], env=dict(os.environ, PYTHONPATH=ROOT, NNGRAPH_THREAD_POOL="1"),
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-3000:]


SPIN_FIRST = r"""
from codegen.llvm import thread_pool
thread_pool.set_spin_ns(5000)
print(thread_pool.spin_bound_ns())
"""


@pytest.mark.parametrize("setting,bound", [("1", "5000"), ("0", "0")])
def test_set_spin_ns_before_the_pool_is_built_or_with_it_off(setting, bound):
    """set_spin_ns first in a process builds the pool and sets its bound; with the pool
    off (NNGRAPH_THREAD_POOL=0) there is nothing to set and the bound reads 0."""
    p = subprocess.run([sys.executable, "-c", SPIN_FIRST], env=dict(os.environ, PYTHONPATH=ROOT,
                                                                    NNGRAPH_THREAD_POOL=setting),
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert p.returncode == 0 and p.stdout.strip() == bound, p.stderr[-3000:]


POOL_BY_MCJIT = r"""
from codegen.llvm import mapped, thread_pool
from codegen.llvm.elf_loader import UnsupportedObject

def refuse(obj, resolve):
    raise UnsupportedObject("refused for the test")

mapped.LoadedImage = refuse
import ctypes
pool = thread_pool._compiled_pool()
assert pool.image is None and pool.engine is not None
try:
    pool.address("nngraph_pool_missing")
    raise SystemExit("a missing name gave an address")
except RuntimeError as e:
    assert "nngraph_pool_missing" in str(e), e
thread_pool.set_spin_ns(0)
assert thread_pool.spin_bound_ns() == 0
assert thread_pool.measure_wake_ns(rounds=1, per_round=2, idle_s=1e-4) > 0
print("ok")
"""


def test_pool_object_the_loader_refuses_runs_through_mcjit():
    """The pool's object through loaded.LoadedObject's MCJIT fallback (its own target
    machine, its C library names told to LLVM): a worker runs the wake-up probe, the
    spin bound is its global, a name it lacks raises like the mapped image's."""
    p = subprocess.run([sys.executable, "-c", POOL_BY_MCJIT], env=dict(os.environ, PYTHONPATH=ROOT,
                                                                      NNGRAPH_THREAD_POOL="1"),
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-3000:]


@pytest.mark.parametrize("text, runnable", [(b"0.50 0.40 0.30 3/345 12345\n", 3), (b"1.00 2.00 3.00 17/900 4\n", 17),
                                            (b"0.50 0.40 0.30 12", 1 << 62), (b"garbage", 1 << 62), (b"", 1 << 62)])
def test_runnable_threads_from_loadavg(tmp_path, text, runnable):
    """The idle spin reads /proc/loadavg's runnable count; text it cannot read counts
    as a busy machine (no idle spin)."""
    from codegen.llvm import target, thread_pool
    target._init()
    engine = thread_pool._engine[0]
    count = ctypes.CFUNCTYPE(ctypes.c_int64)(engine.address("nngraph_pool_runnable"))
    fd_word = ctypes.c_int32.from_address(engine.address("nngraph_pool_loadavg_fd"))
    path = tmp_path / "loadavg"
    path.write_bytes(text)
    saved = fd_word.value
    with open(path, "rb") as f:
        fd_word.value = f.fileno()
        try:
            assert count() == runnable
        finally:
            fd_word.value = saved
    assert count() >= 1                      # this host's own file: at least this thread


def _reads_over_one_idle_wait(thread_pool, load_file, idle_ns, reread_ns):
    """/proc/loadavg reads while a worker ends one task and idles `idle_ns` waiting for
    the next, the load file saying one runnable thread (the idle spin's gate open)."""
    create, join, _ = _pool()
    fd_word = ctypes.c_int32.from_address(thread_pool._engine[0].address("nngraph_pool_loadavg_fd"))
    saved = (thread_pool.spin_bound_ns(), thread_pool.idle_spin_bound_ns(), fd_word.value)
    task = TASK(lambda arg: 0)
    load_file.write_bytes(b"0.00 0.00 0.00 1/100 1\n")
    read = os.open(load_file, os.O_RDONLY)
    try:
        fd_word.value = read
        thread_pool.set_spin_ns(0, idle_ns, reread_ns)
        time.sleep(0.05)                     # every earlier wait over
        before = thread_pool.loadavg_reads()
        handle = ctypes.c_int64()
        assert create(ctypes.byref(handle), None, task, None) == 0 and handle.value & 1
        assert join(handle.value, None) == 0
        time.sleep(2 * idle_ns / 1e9)        # the worker's idle wait over
        return thread_pool.loadavg_reads() - before
    finally:
        fd_word.value = saved[2]
        thread_pool.set_spin_ns(*saved[:2])
        os.close(read)


def test_idle_spin_reads_the_load_at_most_every_interval(tmp_path):
    """A pread of /proc/loadavg (a system call) on every spin turn cost several times the
    rest of the turn: a wait re-reads it only every loadavg_interval_ns(idle bound), LOADAVG_READS times over
    the idle spin at most (the worker's wait and the join's: twice that, plus their
    first reads); read on every turn (interval 0) the same wait reads far more often."""
    from codegen.llvm import target, thread_pool
    target._init()
    idle_ns = 20_000_000
    assert thread_pool.loadavg_interval_ns(idle_ns) == idle_ns // thread_pool.LOADAVG_READS
    limited = _reads_over_one_idle_wait(thread_pool, tmp_path / "loadavg", idle_ns, None)
    assert 1 <= limited <= 2 * (thread_pool.LOADAVG_READS + 1), limited
    every_turn = _reads_over_one_idle_wait(thread_pool, tmp_path / "loadavg", idle_ns, 0)
    assert every_turn > 10 * (thread_pool.LOADAVG_READS + 1), every_turn


def _child_loadavg(run, x, conn):
    from codegen.llvm import thread_pool
    engine = thread_pool._engine[0]
    fd = ctypes.c_int32.from_address(engine.address("nngraph_pool_loadavg_fd")).value
    runnable = ctypes.CFUNCTYPE(ctypes.c_int64)(engine.address("nngraph_pool_runnable"))()
    conn.send((fd, os.readlink(f"/proc/self/fd/{fd}"), runnable, run(x)))
    conn.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_forked_child_reads_the_load_through_its_own_descriptor(monkeypatch):
    """A forked child opens /proc/loadavg anew (and closes the inherited number, which it
    may give to another file): its pool reads the load through its own descriptor and
    its split kernel runs on its own workers."""
    from codegen.llvm import thread_pool
    run, ref = _split_runner(monkeypatch)
    x = np.random.default_rng(4).standard_normal((257, 65))
    np.testing.assert_allclose(run(x), ref(x), rtol=1e-13)
    parent_fd = ctypes.c_int32.from_address(thread_pool._engine[0].address("nngraph_pool_loadavg_fd")).value
    fd, path, runnable, got = _from_forked_child(_child_loadavg, run, x)
    assert fd >= 0 and fd != parent_fd and path == "/proc/loadavg", (fd, parent_fd, path)
    assert 1 <= runnable < 1 << 62
    np.testing.assert_allclose(got, ref(x), rtol=1e-13)
    assert os.readlink(f"/proc/self/fd/{parent_fd}") == "/proc/loadavg"      # the parent's stays open
