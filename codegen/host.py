"""Facts about the machine nngraph runs on: the one place that reads them.

Every threshold the CPU backend uses (threads, BLAS threads, split sizes, tile
sizes, vector width) is derived from these facts by codegen/tuning.py, a pure
function, so nothing is fitted to the machine the code was written on (the CPU
differs between runs: an AVX-512 Intel one time, an AVX2 AMD the next).

Static facts come from the operating system and LLVM: the CPUs this process may
run on (sched_getaffinity) and how many distinct cores they are (sysfs topology),
the vector extensions (llvmlite's host features, less any NNGRAPH_CPU_FEATURES
turns off), cache sizes (sysfs cache index*), the clock (cpufreq's maximum, else
/proc/cpuinfo's "cpu MHz").

Costs are measured: what starting and joining a thread costs here (the price the
generated code pays to split a kernel without the worker pool), and the worker
pool's hand-off (codegen/llvm/thread_pool.py, which records it through
`measured_fact`). Each is measured once per host and kept in the cache directory as
JSON (host-<hash of the static facts>.json, FACTS_VERSION in it, written to a
temporary file and renamed; read only from a directory and file only this user can
write), so every process on the host derives the same thresholds and hence the
same IR text and cache keys. Each cost keeps a trust record (codegen/timing_trust.py);
one measured while the machine was disturbed is measured again by a later process
that finds the machine not busy, a bounded number of times (a file without records,
written before them, is final).

On a virtual machine such a cost is bimodal: a thread start took 8-15 us, or 50-70 us
(also 60 us in every one of 160 starts of one process) when the host was slow to run
the new thread; a busy neighbour adds milliseconds. A cost kept for good must be the
warm one, so each is timed one operation at a time in rounds spread over a few
milliseconds (tens for a thread start), and the warm value taken (`warm_ns`: a low
quantile of all the timings).
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import json
import os
import platform
import tempfile
import time

from codegen import timing_trust

# used only when the OS says nothing: the clock of a machine whose frequency cannot
# be read (no cpufreq, no "cpu MHz"), and the caches of one without sysfs cache info
UNKNOWN_GHZ = 2.0
UNKNOWN_CACHE = {"l1d": 32 << 10, "l2": 256 << 10, "l3": 8 << 20}
AVX512 = ("avx512f", "avx512bw", "avx512dq", "avx512vl")
# the thread start cost recorded where no thread can be started (a sandbox): so high
# that no kernel is ever split (the generated code would run every range inline anyway)
NO_THREADS_NS = 1e12
# the host-facts file's format and how its costs are measured; a file of another
# version is measured again (1: the thread start as the best round's mean of 32
# starts, which kept a slow mode of a VM: 61 us against 9 us, every threshold 4x)
FACTS_VERSION = 2
# the warm value of a bimodal cost: this quantile of its single timings (a mode that
# shows in at least this share of them is found, a rare faster fluke is not)
WARM_QUANTILE = 0.1
# the thread start's timing: rounds x single starts per round
THREAD_START_ROUNDS = (8, 16)
THREAD_START_TIMINGS = THREAD_START_ROUNDS[0] * THREAD_START_ROUNDS[1]


@dataclasses.dataclass(frozen=True)
class HostFacts:
    """What the derivations may depend on. `vector_bits`: the widest float vectors
    the CPU has (512 with AVX-512 F/BW/DQ/VL, 256 with AVX2+FMA, else 128);
    caches in bytes, per core for l1d and l2; `thread_start_ns`: starting plus
    joining one thread, measured."""
    cpu_model: str
    vendor: str
    logical_cpus: int
    physical_cores: int
    vector_bits: int
    ghz: float
    l1d: int
    l2: int
    l3: int
    thread_start_ns: float

    def lanes(self, bits: int | None = None, itemsize: int = 4) -> int:
        """Elements of `itemsize` bytes in one vector of `bits` (default the widest)."""
        return max(1, (bits or self.vector_bits) // (8 * itemsize))


def vector_bits_of(features: dict) -> int:
    """The widest float vectors in a feature set (llvmlite's host features)."""
    if all(features.get(f, False) for f in AVX512):
        return 512
    if features.get("avx2", False) and features.get("fma", False):
        return 256
    return 128


def feature_overrides(env=None) -> list:
    """NNGRAPH_CPU_FEATURES: LLVM feature changes such as "-avx512f" (generate and
    tune for this CPU without AVX-512, as on an AVX2 machine), comma-separated."""
    raw = (os.environ if env is None else env).get("NNGRAPH_CPU_FEATURES", "")
    items = [x.strip() for x in raw.split(",") if x.strip()]
    for x in items:
        if x[0] not in "+-" or not x[1:].replace("-", "").replace(".", "").replace("_", "").isalnum():
            raise ValueError(f"NNGRAPH_CPU_FEATURES must be a comma-separated list of +feature or "
                             f"-feature (LLVM names, e.g. -avx512f), got {raw!r}")
    return items


# turning off a vector extension turns off the wider ones built on it (as in LLVM)
DEPENDENTS = {"avx": ("avx2", "fma", "avx512"), "avx2": ("avx512",), "avx512f": ("avx512",)}


def cpu_features(host: dict, overrides) -> dict:
    """The host's LLVM features with the overrides applied (-avx512f also turns off
    every avx512* extension, -avx2 those and -avx also avx2 and fma)."""
    out = dict(host)
    for x in overrides:
        on, name = x[0] == "+", x[1:]
        out[name] = on
        if not on:
            out.update({k: False for k in out if k.startswith(DEPENDENTS.get(name, ()))})
    return out


def effective_feature_text() -> str:
    """The features code is generated for, as LLVM's "+a,-b,..." list: the host's
    (llvm_host) then NNGRAPH_CPU_FEATURES's changes (the last mention wins, as in
    LLVM). What a per-host measured choice (the BLAS, conv layouts) is keyed by, so
    that a run without AVX-512 never reuses a verdict measured with it."""
    return ",".join([llvm_host()["features"]] + feature_overrides())


def avx512_turned_off() -> bool:
    """True when the CPU has AVX-512 but NNGRAPH_CPU_FEATURES turns it off: then the
    BLAS nngraph calls is held to AVX2 too (codegen/llvm/blas.py, mkl.py), so that
    the whole process runs as on an AVX2 machine."""
    return vector_bits_of(llvm_host_features()) >= 512 > host_facts().vector_bits


def cpuinfo() -> dict:
    """The first CPU's block of /proc/cpuinfo as {key: text} (empty where there is none);
    benchmarks/machine.py reads the model and flags it prints from here too."""
    out = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break                      # the first CPU's block is enough
                k, _, v = line.partition(":")
                out.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return out


def _allowed_cpus() -> list:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _physical_cores(cpus) -> int:
    """Distinct (package, core) pairs among `cpus` (SMT siblings count once)."""
    cores = set()
    for c in cpus:
        base = f"/sys/devices/system/cpu/cpu{c}/topology/"
        pkg, core = _read(base + "physical_package_id"), _read(base + "core_id")
        cores.add((pkg, core) if core else ("cpu", c))
    return max(1, len(cores))


def parse_size(text: str) -> int:
    """Bytes of a sysfs cache size such as "48K", "2048K", "32M"."""
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in "KMG" else text
    return int(digits) * mult if digits.isdigit() else 0


def _caches() -> dict:
    out = dict(UNKNOWN_CACHE)
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(e for e in os.listdir(base) if e.startswith("index"))
    except OSError:
        return out
    for e in entries:
        level, kind = _read(f"{base}/{e}/level"), _read(f"{base}/{e}/type")
        size = parse_size(_read(f"{base}/{e}/size"))
        if not size or kind == "Instruction":
            continue
        name = {"1": "l1d", "2": "l2", "3": "l3"}.get(level)
        if name:
            out[name] = size
    return out


def _ghz(info: dict) -> float:
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if khz.isdigit() and int(khz) > 0:
        return int(khz) / 1e6
    try:
        return float(info.get("cpu MHz", "")) / 1e3 or UNKNOWN_GHZ
    except ValueError:
        return UNKNOWN_GHZ


def static_facts() -> dict:
    """Everything but the measurement, as a dict of HostFacts fields."""
    info = cpuinfo()
    cpus = _allowed_cpus()
    caches = _caches()
    return {"cpu_model": info.get("model name", "unknown CPU"), "vendor": info.get("vendor_id", ""),
            "logical_cpus": max(1, len(cpus)), "physical_cores": _physical_cores(cpus),
            "vector_bits": vector_bits_of(cpu_features(llvm_host_features(), feature_overrides())),
            "ghz": round(_ghz(info), 3),
            "l1d": caches["l1d"], "l2": caches["l2"], "l3": caches["l3"]}


def warm_ns(samples) -> float:
    """The warm value of a cost from its single timings (ns): the WARM_QUANTILE
    quantile, so a slow mode (a halted CPU woken, a busy neighbour) that takes most
    of the timings is not what is kept, as long as the warm mode shows at all."""
    ordered = sorted(float(x) for x in samples)
    if not ordered:
        raise ValueError("warm_ns: no timings")
    return ordered[int(WARM_QUANTILE * (len(ordered) - 1))]


def timed_rounds(once, rounds: int, per_round: int, gap_s: float, clock=time.perf_counter_ns) -> list:
    """Timings (ns, by `clock`) of `rounds` x `per_round` single calls of once(), the
    rounds `gap_s` apart: a slow mode that lasts a while (a neighbour's burst) then
    takes some rounds, not all. once() is called once first (first-time setup)."""
    once()
    out = []
    for r in range(rounds):
        if r:
            time.sleep(gap_s)
        for _ in range(per_round):
            t = clock()
            once()
            out.append(clock() - t)
    return out


def measure_thread_start_ns(rounds: int = THREAD_START_ROUNDS[0], per_round: int = THREAD_START_ROUNDS[1], gap_s: float = 10e-3,
                            clock=time.perf_counter_ns) -> float:
    """Nanoseconds to create and join one thread with pthread_create/pthread_join
    (what the generated code calls without the worker pool), its warm value
    (warm_ns of timed_rounds). The thread runs the C library's free(NULL), a no-op."""
    libc = ctypes.CDLL(None)
    create, join = libc.pthread_create, libc.pthread_join
    create.argtypes = [ctypes.POINTER(ctypes.c_ulong), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    join.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
    start = ctypes.cast(libc.free, ctypes.c_void_p).value
    tid = ctypes.c_ulong()

    def once():
        if create(ctypes.byref(tid), None, start, None) != 0:
            raise OSError("pthread_create failed while measuring the thread start cost")
        join(tid.value, None)
    return warm_ns(timed_rounds(once, rounds, per_round, gap_s, clock))


def _facts_path(static: dict):
    from codegen.cache import trusted_dir
    d = trusted_dir()
    if d is None:
        return None
    tag = hashlib.sha256(json.dumps(static, sort_keys=True).encode()).hexdigest()[:16]
    return d / f"host-{tag}.json"


def _read_facts(path, static: dict):
    """The host-facts file's contents when it is this host's and of FACTS_VERSION, else None."""
    from codegen.cache import read_trusted
    raw = read_trusted(path) if path is not None else None
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        ok = isinstance(data, dict) and data.get("version") == FACTS_VERSION and data.get("static") == static
    except ValueError:
        return None
    return data if ok else None


def _load_measured(path, static: dict) -> dict:
    """{name: ns} of the costs recorded for this host (_measured_in)."""
    return _measured_in(_read_facts(path, static))


def _measured_in(data) -> dict:
    """{name: ns} of the costs in the host-facts file's `data` (_read_facts); {} when
    there is no file, it is damaged, of another FACTS_VERSION or another host's (then
    measured again); a cost whose trust record is damaged is left out (measured again)."""
    try:
        measured = {str(k): float(v) for k, v in data["measured"].items()}
    except (KeyError, TypeError, AttributeError, ValueError):
        return {}
    trust = _trust_in(data)
    return {k: v for k, v in measured.items() if v > 0 and trust.get(k, True) is not False}


def _load_trust(path, static: dict) -> dict:
    """The trust records of the costs recorded for this host (_trust_in)."""
    return _trust_in(_read_facts(path, static))


def _trust_in(data) -> dict:
    """{name: trust record (codegen/timing_trust.py), or False when damaged} of the
    costs in `data` that have one (a file written before the records: none, all final)."""
    trust = data.get("trust") if isinstance(data, dict) else None
    if not isinstance(trust, dict):
        return {}
    return {str(k): (v if timing_trust.valid(v) else False) for k, v in trust.items()}


def _store_measured(path, static: dict, measured: dict, trust: dict | None = None) -> None:
    if path is None:
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-host-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"version": FACTS_VERSION, "static": static, "measured": measured, "trust": trust or {}}, f)
        os.replace(tmp, path)
    except OSError:
        pass                                       # unwritable cache: measured again next process


def measured_fact(name: str, measure, static: dict | None = None, timings: int = 1) -> float:
    """The host's recorded cost `name` (ns), measured by measure() the first time on
    this host and recorded beside the others, with the evidence of how disturbed the
    machine was meanwhile (codegen/timing_trust.py; `timings`: how many single timings
    measure() makes, one of which must be untouched). One recorded as provisional is
    measured again by the next process that asks while the machine is not busy
    (timing_trust.due; this function is called once a process per cost), until it is
    final. OSError from measure() propagates (nothing
    is recorded)."""
    static = static_facts() if static is None else static
    path = _facts_path(static)
    data = _read_facts(path, static)                # read once: a compile-cache hit comes here
    measured = _measured_in(data)
    previous = _trust_in(data).get(name) if name in measured else None
    if name not in measured or timing_trust.due(previous):
        watch = timing_trust.Watch()
        value = float(measure())
        rec = timing_trust.record(watch.evidence(timings), previous)
        data = _read_facts(path, static)            # as it is now: another process may have added one
        measured = {**_measured_in(data), name: value}
        trust = {k: v for k, v in _trust_in(data).items() if v and k in measured}
        _store_measured(path, static, measured, {**trust, name: rec})
    return measured[name]


@functools.lru_cache(maxsize=None)
def host_facts() -> HostFacts:
    """This host's facts (static ones read, the thread start cost measured once per
    host and kept in the cache directory)."""
    static = static_facts()
    try:
        ns = measured_fact("thread_start_ns", measure_thread_start_ns, static, timings=THREAD_START_TIMINGS)
    except OSError:
        ns = NO_THREADS_NS                         # not recorded: a later process may start threads
    return HostFacts(thread_start_ns=ns, **static)


# ----------------------------------------------------------------------------- LLVM's answers
# What LLVM says about this host (the process's target triple, the CPU's name and
# features as LLVM names them, LLVM's version), kept per host in the cache directory
# so that a process that only loads stored object code (a compile-cache hit) need not
# load LLVM to ask: loading llvmlite's binding and its 100 MB library was ~25 ms of
# such a hit's ~75 ms. The table (llvm-host.json) is keyed by a fingerprint of what
# LLVM's answers are made of: the CPU's identity and flags as the kernel reports them
# (the flags are what the CPU and the operating system enable, which LLVM's own
# detection reads), the machine, and llvmlite's version (its LLVM). An unknown
# fingerprint, or a damaged or foreign table (codegen/cache.py's rules), asks LLVM and
# records the answer; every process that starts LLVM anyway (a compile:
# codegen/llvm/target.py) checks the record against LLVM and replaces it if it differs.

LLVM_TABLE = "llvm-host.json"
LLVM_IDENTITY = ("vendor_id", "cpu family", "model", "model name", "stepping", "microcode", "flags")
LLVM_FIELDS = ("triple", "cpu", "features", "llvm")


def llvm_fingerprint() -> str:
    """What LLVM's answers depend on, hashed: the table's key for this host."""
    import llvmlite
    info = cpuinfo()
    parts = [platform.machine(), llvmlite.__version__] + [f"{k}={info.get(k, '')}" for k in LLVM_IDENTITY]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def ask_llvm() -> dict:
    """LLVM's answers, from LLVM itself (loads it)."""
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    return {"triple": llvm.get_process_triple(), "cpu": llvm.get_host_cpu_name(),
            "features": llvm.get_host_cpu_features().flatten(),
            "llvm": ".".join(map(str, llvm.llvm_version_info))}


@functools.lru_cache(maxsize=None)
def llvm_host() -> dict:
    """{"triple", "cpu", "features" (LLVM's "+a,-b,..." list), "llvm" (version)}: from
    the table when this host's fingerprint is there, else from LLVM (then recorded)."""
    from codegen.cache import read_json_table, write_json_table
    if not cpuinfo().get("flags"):
        return ask_llvm()            # no CPU identity to key a record by (not Linux): ask each process
    key = llvm_fingerprint()
    table = read_json_table(LLVM_TABLE)
    entry = table.get(key)
    if isinstance(entry, dict) and set(entry) == set(LLVM_FIELDS) and all(isinstance(entry[f], str) for f in LLVM_FIELDS):
        return entry
    entry = ask_llvm()
    table[key] = entry
    write_json_table(LLVM_TABLE, table)
    return entry


def check_against_llvm() -> bool:
    """Compare the recorded answers with LLVM's (LLVM is loaded by now); where they
    differ, record LLVM's and use them from now on. True when they agreed."""
    live = ask_llvm()
    if llvm_host() == live:
        return True
    from codegen.cache import read_json_table, write_json_table
    table = read_json_table(LLVM_TABLE)
    table[llvm_fingerprint()] = live
    write_json_table(LLVM_TABLE, table)
    llvm_host.cache_clear()
    return False


def llvm_host_features() -> dict:
    """LLVM's host features as {name: on} (llvmlite's FeatureMap form)."""
    return {item[1:]: item[0] == "+" for item in llvm_host()["features"].split(",") if item}
