"""Persistent worker threads behind the symbols the generated code calls for a split:

    i32 nngraph_pthread_create(i64* handle, i8* attr, i8* (i8*)* fn, i8* arg)
    i32 nngraph_pthread_join(i64 handle, i8** ret)

Why: a split kernel or GEMM used to start fresh threads on every call (about 7 us
each, and a BLAS on a new thread first builds its per-thread buffers: 26-85 us
more for MKL's sgemm). Here a task is handed to a worker that stays alive, so the
generated code (and the disk cache of object code) is unchanged.

Native code with no C compiler: the pool is an LLVM IR module built with llvmlite
once per process (its object code cached on disk and mapped by elf_loader.py; mapped.py
falls back to MCJIT), and its two functions' addresses are
registered under the names above before any kernel loads (target.py). It calls
the C library's pthread_create/pthread_detach/pthread_join, getpid, clock_gettime
and syscall (futex: x86-64 Linux).

Each of SLOTS slots (64 bytes, one cache line) holds one worker, started the first
time its slot is claimed:
- create claims a free slot (compare-and-swap), stores (fn, arg) and wakes the
  worker; the handle is (slot << 1) | 1. A real pthread_t is a pointer to the
  thread's (aligned) descriptor, so its low bit is 0 and join tells them apart.
- no free slot (several Python threads at once, a task that splits again), an
  `attr`, a worker that cannot be started, or a process that is not the pool's
  (after a fork): the task gets a real thread from pthread_create, as without a
  pool; if that fails too the caller runs the range itself (entry.py).
- waiting (a worker for its next task, join for a task's end) spins with `pause`
  for at most the host's measured thread start cost (codegen/host.py: spinning
  longer than a new thread would take to start cannot win against a fresh
  thread), then sleeps on a futex: no thread spins indefinitely. The bound is the
  global nngraph_pool_spin_ns, read when a wait begins, so benchmarks/pool_spin_ab.py
  compares bounds in one process (set_spin_ns). A native probe (measure_wake_ns)
  measures the futex wake-up latency through the pool, for that benchmark: about
  2 us on the 2-core Xeon VM this was written on, where a 2 us bound measured slower
  than the thread start cost (9 us) and a 180 us one much faster on free cores and
  much slower on busy ones (the benchmark's docstring has the figures).
- a second probe (measure_split_ns, nngraph_pool_probe_split) times the hand-off of
  a task to a worker kept awake and its join: what a split pays through the pool,
  from which codegen/tuning.py derives the split thresholds (about 0.3 us on that
  VM, against a 9 us thread start).
- past that bound a wait spins on (up to the idle bound) only while /proc/loadavg
  counts no more runnable threads than CPUs; it re-reads that count at most
  LOADAVG_READS times over the idle bound (loadavg_interval_ns), not on every turn.
- a forked child resets the pool and opens /proc/loadavg anew (os.register_at_fork)
  and starts its own workers; the getpid check covers a fork not made through Python.

NNGRAPH_THREAD_POOL=0 registers the C library's pthread_create/pthread_join instead.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import threading
import time

import llvmlite
import llvmlite.ir as ir

from codegen.host import llvm_host

from .elf_loader import process_symbol
from .mapped import MappedObject, mcjit_engine
from .object_cache import cached_object

I8P = ir.IntType(8).as_pointer()
I32, I64 = ir.IntType(32), ir.IntType(64)
TASK_FN = ir.FunctionType(I8P, [I8P])
# slot fields (i32): claimed by a create until its join; work: 0 none, 1 posted,
# 2 worker asleep; done: 0 running, 1 finished, 2 joiner asleep; started: worker exists
CLAIMED, WORK, DONE, STARTED, FN, ARG = range(6)
SLOT = ir.LiteralStructType([I32, I32, I32, I32, I8P, I8P, ir.ArrayType(I64, 4)])   # 64 bytes
SYS_FUTEX, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 202, 128, 129
CLOCK_MONOTONIC = 1
SEQ = "seq_cst"
LIBC_FUNCTIONS = ("pthread_create", "pthread_detach", "pthread_join", "getpid", "clock_gettime", "syscall",
                  "pread")
LOADAVG_BYTES = 128     # /proc/loadavg: "0.50 0.40 0.30 2/345 12345\n", well under this
LOADAVG_READS = 32      # reads of /proc/loadavg over a whole idle spin, at most (loadavg_interval_ns)
MAX_SPIN_NS = 750_000   # a waiting pool thread never spins longer than the base time slice
                        # of Linux's schedulers (EEVDF's base_slice, CFS's minimum
                        # granularity: 0.75 ms): beyond it the spinner is preempted anyway
AWAKE_NS = 1_000_000_000  # the spin bound while the hand-off is measured (measure_split_ns):
                          # longer than the measurement, ended by re-arming the workers
SPLIT_ATTEMPTS = 4        # measurements of the hand-off at most, while it reads above a thread start
SPLIT_RETRY_S = 5e-3      # the pause before the second one (x4 before each next: 5, 20, 80 ms)
SPLIT_ROUNDS = (8, 64)    # a measurement of the hand-off: rounds x single hand-offs per round

_engine = None          # keeps the compiled pool alive for the process's lifetime
# one first build: a second would replace _engine and unmap the first pool's code,
# which registered symbols and the fork handler may already point at. Reentrant: the
# build's thread may ask for the pool again once _engine is set (set_spin_ns)
_build_lock = threading.RLock()


def pool_supported(system: str | None = None, machine: str | None = None) -> bool:
    """The pool sleeps on a futex through syscall(202, ...): that number is futex on
    x86-64 Linux only (on aarch64 Linux 202 is accept), so elsewhere the C library's
    pthread_create/join stay."""
    system = platform.system() if system is None else system
    machine = platform.machine() if machine is None else machine
    return system == "Linux" and machine.lower() in ("x86_64", "amd64")


def pool_enabled(env=None) -> bool:
    """On where supported, unless NNGRAPH_THREAD_POOL=0 (or off/false/no)."""
    raw = (os.environ if env is None else env).get("NNGRAPH_THREAD_POOL", "1").strip().lower()
    return pool_supported() and raw not in ("0", "off", "false", "no")


def slot_count(logical_cpus: int) -> int:
    """Slots: room for every CPU's worker several times over (nested splits and a
    few Python threads calling at once); beyond that tasks get plain threads."""
    return max(8, 4 * logical_cpus)


def thread_symbols() -> dict:
    """{"pthread_create": address, "pthread_join": address}: the pool's functions,
    or the C library's when NNGRAPH_THREAD_POOL=0. Builds the pool once."""
    if not pool_enabled():
        return {name: _libc_address(name) for name in ("pthread_create", "pthread_join")}
    pool = _compiled_pool()
    return {"pthread_create": pool.address("nngraph_pool_create"), "pthread_join": pool.address("nngraph_pool_join")}


def _libc_address(name: str) -> int:
    """The C library's `name` (elf_loader.process_symbol); OSError naming it when the
    process has none (the pool or the plain path would call address 0)."""
    address = process_symbol(name)
    if not address:
        raise OSError(f"the C library function {name!r} that the worker pool calls is not in this process")
    return address


def _compiled_pool():
    """The pool's loaded object, built once per process however many threads ask."""
    with _build_lock:
        return _build_pool()


def _build_pool():
    global _engine
    if _engine is None:
        from codegen.host import host_facts
        facts = host_facts()
        libc_symbols = {f"nngraph_pool_libc_{name}": _libc_address(name) for name in LIBC_FUNCTIONS}
        slots, spin_ns = slot_count(facts.logical_cpus), int(facts.thread_start_ns)
        # codegen at -O0: the pool's few instructions per hand-off are not what costs (a
        # futex wake, a cache line moving between cores); -O2 took 56 ms of every process's
        # first compile or cache hit, -O0 8 ms; its object code comes from the disk cache
        # after the first process (object_cache.py) and is mapped without LLVM (elf_loader.py)
        host = llvm_host()
        description = (f"thread pool {_source_digest()}|slots {slots}|spin {spin_ns} ns|{host['triple']}|O0|"
                       f"llvmlite {llvmlite.__version__}|LLVM {host['llvm']}")
        obj = cached_object(description, lambda: str(build_module(slots, spin_ns)), _pool_machine)
        loaded = _load(obj, libc_symbols)
        reset = ctypes.CFUNCTYPE(None)(loaded.address("nngraph_pool_reset"))
        _engine = (loaded, reset)
        os.register_at_fork(after_in_child=_reset_in_child)
        _loadavg_fd().value = _open_loadavg()
        _word("nngraph_pool_cpus").value = facts.logical_cpus
        set_spin_ns(int(facts.thread_start_ns), idle_spin_ns())
    return _engine[0]


def idle_spin_ns() -> int:
    """How long (ns) a worker-pool thread spins on past its first bound (the thread
    start cost) while the machine has no thread waiting for a CPU: such a spin takes
    nothing from anyone, and a worker that stays on its core keeps it warm (a
    sleeping one's core may be halted or given to others, and refilled when it
    wakes). MAX_SPIN_NS."""
    return MAX_SPIN_NS


def _word(name: str):
    return ctypes.c_int64.from_address(_engine[0].address(name))


def _loadavg_fd():
    return ctypes.c_int32.from_address(_engine[0].address("nngraph_pool_loadavg_fd"))


def _reset_in_child() -> None:
    """After a fork, in the child: the pool reset (nngraph_pool_reset) and /proc/loadavg
    opened anew, the inherited descriptor closed. Why: the child owns its descriptor
    table; a child that closes descriptors it did not open (a daemon does) could
    otherwise give that number to another file, which the idle spin would then read."""
    _engine[1]()
    fd = _loadavg_fd()
    inherited, fd.value = fd.value, _open_loadavg()
    if inherited >= 0:
        os.close(inherited)


def _spin_word():
    """The pool's spin bound (built first), or None with no pool (NNGRAPH_THREAD_POOL=0)."""
    thread_symbols()
    if _engine is None:
        return None
    return _word("nngraph_pool_spin_ns")


def spin_bound_ns() -> int:
    """How long (ns) a waiting worker or join spins before it sleeps; 0 with no pool."""
    word = _spin_word()
    return word.value if word is not None else 0


def idle_spin_bound_ns() -> int:
    """How long (ns into a wait) it then spins on while no thread waits for a CPU; 0
    with no pool."""
    thread_symbols()
    return _word("nngraph_pool_idle_spin_ns").value if _engine is not None else 0


def set_spin_ns(ns: int, idle_ns: int | None = None, reread_ns: int | None = None) -> None:
    """Sets the spin bounds (benchmarks A/B them; measure_wake_ns needs them 0) and how
    often the idle spin re-reads the load: `reread_ns` when given (0: every turn), else
    loadavg_interval_ns(idle_ns) when `idle_ns` is given; nothing to set with no pool.
    Call it while no split runs: waits read them when they begin."""
    word = _spin_word()
    if word is None:
        return
    word.value = max(0, int(ns))
    if idle_ns is not None:
        _word("nngraph_pool_idle_spin_ns").value = max(0, int(idle_ns))
    if reread_ns is not None or idle_ns is not None:
        _word("nngraph_pool_loadavg_every_ns").value = (loadavg_interval_ns(idle_ns) if reread_ns is None
                                                         else max(0, int(reread_ns)))


def loadavg_interval_ns(idle_ns: int) -> int:
    """How often (ns) an idle spin of `idle_ns` re-reads /proc/loadavg: LOADAVG_READS
    times over the spin, so a thread that starts waiting for a CPU is seen within
    1/LOADAVG_READS of the bound (23 us of the 750 us default), and the reads (a system
    call each: a turn that reads took 0.25 us on the 2-core Xeon, several times a turn
    of a clock read and a `pause`) take one turn in a hundred or more, not every one."""
    return max(0, int(idle_ns)) // LOADAVG_READS


def loadavg_reads() -> int:
    """How many times the pool's waits have read /proc/loadavg in this process (0 with
    no pool): what benchmarks and tests see of the idle spin's cost."""
    thread_symbols()
    return _word("nngraph_pool_loadavg_reads").value if _engine is not None else 0


def _open_loadavg() -> int:
    """A descriptor of /proc/loadavg for the pool's runnable-thread count, -1 without one."""
    try:
        return os.open("/proc/loadavg", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


def measure_wake_ns(rounds: int = 5, per_round: int = 8, idle_s: float = 1e-3) -> float:
    """Nanoseconds from posting a task to a sleeping worker to the task running: the
    pool's native probe (nngraph_pool_probe_wake) with the spin bound at 0, so the
    worker is asleep on its futex after `idle_s` (its CPU idle too, as between two
    calls of a compiled function). The best round's mean, as for the thread start
    cost (codegen/host.py), so a busy moment does not stick. OSError when the pool
    cannot hand the probe to a worker (no worker could be started)."""
    engine = _compiled_pool()
    probe = ctypes.CFUNCTYPE(ctypes.c_int64)(engine.address("nngraph_pool_probe_wake"))
    saved = (spin_bound_ns(), idle_spin_bound_ns(), _word("nngraph_pool_loadavg_every_ns").value)
    set_spin_ns(0, 0)
    try:
        if probe() < 0:                           # starts the worker; first-time setup is not the cost
            raise OSError("the worker pool could not start a worker to measure its wake-up latency")
        best = float("inf")
        for _ in range(rounds):
            total = 0
            for _ in range(per_round):
                time.sleep(idle_s)
                ns = probe()
                if ns < 0:
                    raise OSError("the worker pool handed its wake-up probe to a plain thread")
                total += ns
            best = min(best, total / per_round)
    finally:
        set_spin_ns(*saved)
    return float(best)


def measure_split_ns(rounds: int = SPLIT_ROUNDS[0], per_round: int = SPLIT_ROUNDS[1], gap_s: float = 2e-3) -> float:
    """Nanoseconds the pool takes to hand a task that does nothing to a worker and
    join it (nngraph_pool_probe_split), with the worker kept awake (spinning: how a
    split finds it between the kernels of a call), its warm value (host.warm_ns
    over rounds `gap_s` apart). What a split pays through the pool, where the thread
    start cost is what it pays without (codegen/tuning.py).

    A hand-off to a running worker takes well under a thread start (~0.3 us against
    9 us on the 2-core Xeon VM), but only while the worker and the caller each have a
    CPU: sharing one, each hand-off waits for a time slice (9 ms measured, the
    machine loaded by others). Such a measurement is taken again, up to
    SPLIT_ATTEMPTS times further and further apart; what is kept is never above the
    thread start cost (the bound of a wait's spin: past it a waiting thread sleeps,
    and a hand-off costs a wake-up, as a thread start does). OSError when the pool
    cannot hand the probe to a worker."""
    from codegen.host import host_facts
    start_ns = host_facts().thread_start_ns
    ns = _measure_split_once(rounds, per_round, gap_s)
    for attempt in range(1, SPLIT_ATTEMPTS):
        if ns < start_ns:
            break
        time.sleep(SPLIT_RETRY_S * 4 ** (attempt - 1))
        ns = min(ns, _measure_split_once(rounds, per_round, gap_s))
    return min(ns, start_ns)


def _measure_split_once(rounds: int, per_round: int, gap_s: float) -> float:
    """One measurement of measure_split_ns: the spin bounds at AWAKE_NS for its
    length, restored after (and the worker's next wait begun with them)."""
    from codegen.host import warm_ns
    engine = _compiled_pool()
    probe = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.POINTER(ctypes.c_int64), ctypes.c_int64)(
        engine.address("nngraph_pool_probe_split"))

    def hand_offs(n):
        batch = (ctypes.c_int64 * n)()
        if probe(batch, n) != 0:
            raise OSError("the worker pool handed its hand-off probe to a plain thread")
        return list(batch)
    saved = (spin_bound_ns(), idle_spin_bound_ns(), _word("nngraph_pool_loadavg_every_ns").value)
    set_spin_ns(AWAKE_NS, AWAKE_NS)
    timings = []
    try:
        hand_offs(1)                             # the worker starts and begins an awake wait
        for r in range(rounds):
            if r:
                time.sleep(gap_s)                # the worker spins on through the gap
            timings += hand_offs(per_round)
    finally:
        set_spin_ns(*saved)
        hand_offs(1)                             # the worker's next wait has the normal bounds
    return warm_ns(timings)


def split_cost_ns() -> float | None:
    """The pool's hand-off cost on this host (measure_split_ns), measured once per
    host and version of the pool's code (a change to this file measures it again) and
    recorded with the host's facts; None where the pool cannot run a task on a worker
    (then a split pays a thread start)."""
    from codegen.host import measured_fact
    try:
        return measured_fact(f"pool_split_ns-{_source_digest()[:12]}", measure_split_ns,
                             timings=SPLIT_ROUNDS[0] * SPLIT_ROUNDS[1])
    except OSError:
        return None


def _source_digest() -> str:
    """sha256 of this file: the pool's IR is made by its code alone (and llvmlite)."""
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _pool_machine():
    """The target machine of the pool's code: generic x86-64 (no CPU name or features), -O0."""
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm.Target.from_triple(llvm_host()["triple"]).create_target_machine(opt=0, jit=True)


def _load(obj: bytes, libc_symbols: dict):
    """The pool's object mapped (MCJIT on the pool's own target machine if elf_loader
    refuses it); its C library names from `libc_symbols`, not the runtime's registry
    (target._init registers the pool there: it would ask for the pool being built)."""
    return MappedObject(obj, lambda name: libc_symbols.get(name, 0),
                        lambda o: mcjit_engine(o, _pool_machine(), libc_symbols))


def build_module(slots: int, spin_ns: int) -> ir.Module:
    """The pool as an IR module: `slots` slots, waits spinning up to `spin_ns`
    (the global nngraph_pool_spin_ns: set_spin_ns changes it)."""
    m = ir.Module("nngraph_thread_pool")
    m.triple = llvm_host()["triple"]
    pool = _Pool(m, slots, spin_ns)
    pool.emit_runnable()
    pool.emit_wait()
    pool.emit_signal()
    pool.emit_worker()
    pool.emit_create()
    pool.emit_join()
    pool.emit_reset()
    pool.emit_probe()
    pool.emit_probe_split()
    return m


class _Pool:
    """Emits the pool's functions into one module (globals and C library declarations shared)."""

    def __init__(self, m: ir.Module, slots: int, spin_ns: int):
        self.m, self.slots = m, slots
        self.spin = ir.GlobalVariable(m, I64, "nngraph_pool_spin_ns")
        self.spin.initializer = ir.Constant(I64, spin_ns)
        self.idle_until = ir.GlobalVariable(m, I64, "nngraph_pool_idle_spin_ns")
        self.idle_until.initializer = ir.Constant(I64, 0)
        self.cpus = ir.GlobalVariable(m, I64, "nngraph_pool_cpus")
        self.cpus.initializer = ir.Constant(I64, 0)
        self.reread = ir.GlobalVariable(m, I64, "nngraph_pool_loadavg_every_ns")
        self.reread.initializer = ir.Constant(I64, 0)
        self.reads = ir.GlobalVariable(m, I64, "nngraph_pool_loadavg_reads")
        self.reads.initializer = ir.Constant(I64, 0)
        self.loadavg_fd = ir.GlobalVariable(m, I32, "nngraph_pool_loadavg_fd")
        self.loadavg_fd.initializer = ir.Constant(I32, -1)
        self.table = ir.GlobalVariable(m, ir.ArrayType(SLOT, slots), "nngraph_pool_slots")
        self.table.initializer = ir.Constant(self.table.type.pointee, None)
        self.table.align = 64
        self.table.linkage = "internal"
        self.pid = ir.GlobalVariable(m, I32, "nngraph_pool_pid")
        self.pid.initializer = ir.Constant(I32, 0)
        self.pid.linkage = "internal"
        timespec = ir.LiteralStructType([I64, I64])
        self.libc = {
            "pthread_create": ir.FunctionType(I32, [I64.as_pointer(), I8P, TASK_FN.as_pointer(), I8P]),
            "pthread_detach": ir.FunctionType(I32, [I64]),
            "pthread_join": ir.FunctionType(I32, [I64, I8P.as_pointer()]),
            "getpid": ir.FunctionType(I32, []),
            "clock_gettime": ir.FunctionType(I32, [I32, timespec.as_pointer()]),
            "syscall": ir.FunctionType(I64, [I64], var_arg=True),
            "pread": ir.FunctionType(I64, [I32, I8P, I64, I64]),
        }
        self.libc = {k: ir.Function(m, t, f"nngraph_pool_libc_{k}") for k, t in self.libc.items()}
        self.timespec = timespec
        self.pause = ir.Function(m, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")

    def field(self, b, slot_ptr, index):
        return b.gep(slot_ptr, [ir.Constant(I32, 0), ir.Constant(I32, index)])

    def _function(self, name, ftype, linkage="internal"):
        fn = ir.Function(self.m, ftype, name)
        fn.linkage = linkage
        return fn, ir.IRBuilder(fn.append_basic_block("entry"))

    @staticmethod
    def _stack_slot(fn, b, ty):
        """An alloca in fn's entry block, reserved once per call wherever the builder `b`
        is (at -O0 an alloca in a loop block grows the stack every turn). In the entry
        block b itself makes it (a second builder there would move b's position)."""
        if b.block is fn.entry_basic_block:
            return b.alloca(ty)
        entry = ir.IRBuilder(fn.entry_basic_block)
        entry.position_at_start(fn.entry_basic_block)
        return entry.alloca(ty)

    def _futex(self, b, word, op, value):
        b.call(self.libc["syscall"], [ir.Constant(I64, SYS_FUTEX), word, ir.Constant(I32, op),
                                      ir.Constant(I32, value), ir.Constant(I8P, None)])

    def _now_ns(self, b, ts):
        """CLOCK_MONOTONIC in ns, through the timespec `ts` (a _stack_slot)."""
        b.call(self.libc["clock_gettime"], [ir.Constant(I32, CLOCK_MONOTONIC), ts])
        sec = b.load(b.gep(ts, [ir.Constant(I32, 0), ir.Constant(I32, 0)]))
        nsec = b.load(b.gep(ts, [ir.Constant(I32, 0), ir.Constant(I32, 1)]))
        return b.add(b.mul(sec, ir.Constant(I64, 1_000_000_000)), nsec)

    def emit_runnable(self):
        """i64 runnable(): the machine's runnable threads, the numerator of the fourth
        field of /proc/loadavg ("0.50 0.40 0.30 2/345 12345"; the file is kept open as
        nngraph_pool_loadavg_fd); 2**62 when it cannot be read (then a wait never
        spins on)."""
        fn, b = self._function("nngraph_pool_runnable", ir.FunctionType(I64, []), linkage="external")
        unknown = ir.Constant(I64, 1 << 62)
        text = self._stack_slot(fn, b, ir.ArrayType(ir.IntType(8), LOADAVG_BYTES))
        p = b.bitcast(text, I8P)
        got = b.call(self.libc["pread"], [b.load(self.loadavg_fd), p, ir.Constant(I64, LOADAVG_BYTES), ir.Constant(I64, 0)])
        pos, spaces, count = (self._stack_slot(fn, b, I64) for _ in range(3))
        for slot in (pos, spaces, count):
            b.store(ir.Constant(I64, 0), slot)
        scan, step, digits, digit, end = (fn.append_basic_block(n) for n in ("scan", "step", "digits", "digit", "end"))
        b.branch(scan)
        b.position_at_end(scan)                        # skip three spaces
        i = b.load(pos)
        with b.if_then(b.icmp_signed(">=", i, got)):
            b.ret(unknown)
        b.store(b.add(i, ir.Constant(I64, 1)), pos)
        is_space = b.icmp_unsigned("==", b.load(b.gep(p, [i])), ir.Constant(ir.IntType(8), ord(" ")))
        b.cbranch(is_space, step, scan)
        b.position_at_end(step)
        b.store(b.add(b.load(spaces), ir.Constant(I64, 1)), spaces)
        b.cbranch(b.icmp_signed("<", b.load(spaces), ir.Constant(I64, 3)), scan, digits)
        b.position_at_end(digits)                      # then the digits before the "/"
        i = b.load(pos)
        with b.if_then(b.icmp_signed(">=", i, got)):
            b.ret(unknown)
        d = b.sub(b.zext(b.load(b.gep(p, [i])), I64), ir.Constant(I64, ord("0")))
        b.cbranch(b.icmp_unsigned("<", d, ir.Constant(I64, 10)), digit, end)
        b.position_at_end(digit)
        b.store(b.add(b.mul(b.load(count), ir.Constant(I64, 10)), d), count)
        b.store(b.add(i, ir.Constant(I64, 1)), pos)
        b.branch(digits)
        b.position_at_end(end)
        b.ret(b.load(count))
        self.runnable = fn

    def emit_wait(self):
        """void wait_one(i32* word): returns once *word is 1. Spins with `pause` up to
        nngraph_pool_spin_ns; then on, up to nngraph_pool_idle_spin_ns, while no
        thread waits for a CPU (runnable threads at most nngraph_pool_cpus: a spin
        then takes nothing from anyone); then marks the word 2 (asleep) and sleeps
        on its futex until a signal. The runnable count is read at most once every
        nngraph_pool_loadavg_every_ns of a wait (a pread of /proc/loadavg, a system
        call, costs several turns of a clock read and a `pause`), its verdict kept in
        between; each read counts in nngraph_pool_loadavg_reads."""
        fn, b = self._function("nngraph_pool_wait_one", ir.FunctionType(ir.VoidType(), [I32.as_pointer()]))
        word = fn.args[0]
        one, two = ir.Constant(I32, 1), ir.Constant(I32, 2)
        ts = self._stack_slot(fn, b, self.timespec)
        pausing_until = b.load_atomic(self.spin, "monotonic", 8)
        idle_until = b.load_atomic(self.idle_until, "monotonic", 8)
        every = b.load_atomic(self.reread, "monotonic", 8)
        cpus = b.load_atomic(self.cpus, "monotonic", 8)
        next_read, free = self._stack_slot(fn, b, I64), self._stack_slot(fn, b, ir.IntType(1))
        b.store(ir.Constant(I64, 0), next_read)
        b.store(ir.Constant(ir.IntType(1), 0), free)
        start = self._now_ns(b, ts)
        names = ("spin", "waited", "pause", "maybe_idle", "idle", "read", "verdict", "give_up", "sleep", "done")
        spin, check, pausing, maybe_idle, idle, read, verdict, give_up, sleep, done = (
            fn.append_basic_block(n) for n in names)
        b.branch(spin)
        b.position_at_end(spin)
        b.cbranch(b.icmp_unsigned("==", b.load_atomic(word, SEQ, 4), one), done, check)
        b.position_at_end(check)
        waited = b.sub(self._now_ns(b, ts), start)
        b.cbranch(b.icmp_signed("<", waited, pausing_until), pausing, maybe_idle)
        b.position_at_end(pausing)
        b.call(self.pause, [])
        b.branch(spin)
        b.position_at_end(maybe_idle)
        b.cbranch(b.icmp_signed("<", waited, idle_until), idle, give_up)
        b.position_at_end(idle)                        # the last verdict until `every` ns have passed
        b.cbranch(b.icmp_signed("<", waited, b.load(next_read)), verdict, read)
        b.position_at_end(read)
        b.store(b.icmp_signed("<=", b.call(self.runnable, []), cpus), free)
        b.store(b.add(waited, every), next_read)
        b.atomic_rmw("add", self.reads, ir.Constant(I64, 1), "monotonic")
        b.branch(verdict)
        b.position_at_end(verdict)
        b.cbranch(b.load(free), pausing, give_up)
        b.position_at_end(give_up)
        old = b.extract_value(b.cmpxchg(word, ir.Constant(I32, 0), two, SEQ, SEQ), 0)
        b.cbranch(b.icmp_unsigned("==", old, one), done, sleep)
        b.position_at_end(sleep)
        self._futex(b, word, FUTEX_WAIT_PRIVATE, 2)
        b.cbranch(b.icmp_unsigned("==", b.load_atomic(word, SEQ, 4), one), done, sleep)
        b.position_at_end(done)
        b.ret_void()
        self.wait_one = fn

    def emit_signal(self):
        """void signal_one(i32* word): *word = 1, waking its sleeper if it was 2."""
        fn, b = self._function("nngraph_pool_signal_one", ir.FunctionType(ir.VoidType(), [I32.as_pointer()]))
        old = b.atomic_rmw("xchg", fn.args[0], ir.Constant(I32, 1), SEQ)
        with b.if_then(b.icmp_unsigned("==", old, ir.Constant(I32, 2))):
            self._futex(b, fn.args[0], FUTEX_WAKE_PRIVATE, 1)
        b.ret_void()
        self.signal_one = fn

    def emit_worker(self):
        """i8* worker(slot): forever: wait for a task, run it, mark it done."""
        fn, b = self._function("nngraph_pool_worker", TASK_FN)
        slot = b.bitcast(fn.args[0], SLOT.as_pointer())
        loop = fn.append_basic_block("loop")
        b.branch(loop)
        b.position_at_end(loop)
        b.call(self.wait_one, [self.field(b, slot, WORK)])
        task = b.load(self.field(b, slot, FN))
        arg = b.load(self.field(b, slot, ARG))
        b.store_atomic(ir.Constant(I32, 0), self.field(b, slot, WORK), SEQ, 4)
        b.call(b.bitcast(task, TASK_FN.as_pointer()), [arg])
        b.call(self.signal_one, [self.field(b, slot, DONE)])
        b.branch(loop)
        self.worker = fn

    def _claim(self, fn, b):
        """Index of a slot claimed for this task, or -1 (none free / not our process)."""
        result = self._stack_slot(fn, b, I64)
        b.store(ir.Constant(I64, -1), result)
        pid = b.call(self.libc["getpid"], [])
        owner = b.extract_value(b.cmpxchg(self.pid, ir.Constant(I32, 0), pid, SEQ, SEQ), 0)
        ours = b.or_(b.icmp_unsigned("==", owner, ir.Constant(I32, 0)), b.icmp_unsigned("==", owner, pid))
        scan, body, found, end = (fn.append_basic_block(n) for n in ("scan", "body", "found", "end"))
        entry = b.block
        b.cbranch(ours, scan, end)
        b.position_at_end(scan)
        i = b.phi(I64)
        i.add_incoming(ir.Constant(I64, 0), entry)
        b.cbranch(b.icmp_signed("<", i, ir.Constant(I64, self.slots)), body, end)
        b.position_at_end(body)
        claimed = self.field(b, self.slot_at(b, i), CLAIMED)
        ok = b.extract_value(b.cmpxchg(claimed, ir.Constant(I32, 0), ir.Constant(I32, 1), SEQ, SEQ), 1)
        i.add_incoming(b.add(i, ir.Constant(I64, 1)), body)
        b.cbranch(ok, found, scan)
        b.position_at_end(found)
        b.store(i, result)
        b.branch(end)
        b.position_at_end(end)
        return b.load(result)

    def slot_at(self, b, i):
        return b.gep(self.table, [ir.Constant(I64, 0), i])

    def emit_create(self):
        """i32 create(handle*, attr, fn, arg): a pool worker runs fn(arg), else a real thread."""
        ftype = self.libc["pthread_create"].function_type
        fn, b = self._function("nngraph_pool_create", ftype, linkage="external")
        handle, attr, task, arg = fn.args
        plain = fn.append_basic_block("plain")
        got = fn.append_basic_block("got")
        with b.if_then(b.icmp_unsigned("!=", attr, ir.Constant(I8P, None))):
            b.branch(plain)
        i = self._claim(fn, b)
        b.cbranch(b.icmp_signed(">=", i, ir.Constant(I64, 0)), got, plain)
        b.position_at_end(plain)
        b.ret(b.call(self.libc["pthread_create"], [handle, attr, task, arg]))
        b.position_at_end(got)
        slot = self.slot_at(b, i)
        self._start_worker(fn, b, slot, plain)
        b.store(b.bitcast(task, I8P), self.field(b, slot, FN))
        b.store(arg, self.field(b, slot, ARG))
        b.store_atomic(ir.Constant(I32, 0), self.field(b, slot, DONE), SEQ, 4)
        b.call(self.signal_one, [self.field(b, slot, WORK)])
        b.store(b.or_(b.shl(i, ir.Constant(I64, 1)), ir.Constant(I64, 1)), handle)
        b.ret(ir.Constant(I32, 0))
        self.create = fn

    def _start_worker(self, fn, b, slot, plain):
        """The claimed slot's worker, started if it is not yet; on failure the claim
        is released and the task takes the plain path."""
        started = self.field(b, slot, STARTED)
        with b.if_then(b.icmp_unsigned("==", b.load(started), ir.Constant(I32, 0))):
            tid = self._stack_slot(fn, b, I64)
            rc = b.call(self.libc["pthread_create"], [tid, ir.Constant(I8P, None), self.worker,
                                                      b.bitcast(slot, I8P)])
            failed = fn.append_basic_block("worker_failed")
            ok = fn.append_basic_block("worker_ok")
            b.cbranch(b.icmp_unsigned("!=", rc, ir.Constant(I32, 0)), failed, ok)
            b.position_at_end(failed)
            b.store_atomic(ir.Constant(I32, 0), self.field(b, slot, CLAIMED), SEQ, 4)
            b.branch(plain)
            b.position_at_end(ok)
            b.call(self.libc["pthread_detach"], [b.load(tid)])
            b.store(ir.Constant(I32, 1), started)

    def emit_join(self):
        """i32 join(handle, ret): a pool handle waits for its task and frees the slot;
        a real thread's handle goes to pthread_join."""
        ftype = self.libc["pthread_join"].function_type
        fn, b = self._function("nngraph_pool_join", ftype, linkage="external")
        handle, ret = fn.args
        is_pool = b.trunc(b.and_(handle, ir.Constant(I64, 1)), ir.IntType(1))
        with b.if_then(b.not_(is_pool)):
            b.ret(b.call(self.libc["pthread_join"], [handle, ret]))
        slot = self.slot_at(b, b.lshr(handle, ir.Constant(I64, 1)))
        b.call(self.wait_one, [self.field(b, slot, DONE)])
        with b.if_then(b.icmp_unsigned("!=", ret, ir.Constant(ret.type, None))):
            b.store(ir.Constant(I8P, None), ret)
        b.store_atomic(ir.Constant(I32, 0), self.field(b, slot, CLAIMED), SEQ, 4)
        b.ret(ir.Constant(I32, 0))
        self.join = fn

    def emit_probe(self):
        """i64 probe_wake(): ns from just before posting a task until the task (on a
        worker) reads the clock, or -1 when the task did not go to a worker."""
        task, tb = self._function("nngraph_pool_probe_task", TASK_FN)
        tb.store(self._now_ns(tb, self._stack_slot(task, tb, self.timespec)),
                 tb.bitcast(task.args[0], I64.as_pointer()))
        tb.ret(ir.Constant(I8P, None))
        fn, b = self._function("nngraph_pool_probe_wake", ir.FunctionType(I64, []), linkage="external")
        ts, seen, handle = (self._stack_slot(fn, b, t) for t in (self.timespec, I64, I64))
        start = self._now_ns(b, ts)
        rc = b.call(self.create, [handle, ir.Constant(I8P, None), task, b.bitcast(seen, I8P)])
        with b.if_then(b.icmp_unsigned("!=", rc, ir.Constant(I32, 0))):
            b.ret(ir.Constant(I64, -1))
        b.call(self.join, [b.load(handle), ir.Constant(I8P.as_pointer(), None)])
        pooled = b.trunc(b.and_(b.load(handle), ir.Constant(I64, 1)), ir.IntType(1))
        b.ret(b.select(pooled, b.sub(b.load(seen), start), ir.Constant(I64, -1)))

    def emit_probe_split(self):
        """i64 probe_split(i64* samples, i64 n): n hand-offs of a task that does nothing
        to a worker and back (create, then join), each one's ns in samples[i]; 0, or -1
        when a task did not go to a worker."""
        noop, nb = self._function("nngraph_pool_noop_task", TASK_FN)
        nb.ret(ir.Constant(I8P, None))
        fn, b = self._function("nngraph_pool_probe_split", ir.FunctionType(I64, [I64.as_pointer(), I64]),
                               linkage="external")
        samples, n = fn.args
        ts, handle, i = (self._stack_slot(fn, b, t) for t in (self.timespec, I64, I64))
        b.store(ir.Constant(I64, 0), i)
        head, body, end = (fn.append_basic_block(x) for x in ("head", "body", "end"))
        b.branch(head)
        b.position_at_end(head)
        b.cbranch(b.icmp_signed("<", b.load(i), n), body, end)
        b.position_at_end(body)
        start = self._now_ns(b, ts)
        rc = b.call(self.create, [handle, ir.Constant(I8P, None), noop, ir.Constant(I8P, None)])
        with b.if_then(b.icmp_unsigned("!=", rc, ir.Constant(I32, 0))):
            b.ret(ir.Constant(I64, -1))
        b.call(self.join, [b.load(handle), ir.Constant(I8P.as_pointer(), None)])
        b.store(b.sub(self._now_ns(b, ts), start), b.gep(samples, [b.load(i)]))
        with b.if_then(b.icmp_unsigned("==", b.and_(b.load(handle), ir.Constant(I64, 1)), ir.Constant(I64, 0))):
            b.ret(ir.Constant(I64, -1))
        b.store(b.add(b.load(i), ir.Constant(I64, 1)), i)
        b.branch(head)
        b.position_at_end(end)
        b.ret(ir.Constant(I64, 0))

    def emit_reset(self):
        """void reset(): in a forked child (one thread, no workers), every slot free
        and unstarted and the pool unowned, so the child starts its own workers."""
        fn, b = self._function("nngraph_pool_reset", ir.FunctionType(ir.VoidType(), []), linkage="external")
        b.store(self.table.initializer, self.table)
        b.store_atomic(ir.Constant(I32, 0), self.pid, SEQ, 4)
        b.ret_void()
