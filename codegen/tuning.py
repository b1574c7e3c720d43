"""The CPU backend's thresholds, derived from the host's facts (codegen/host.py).

`derive(facts, env)` is a pure function: the same facts and environment give the
same thresholds on any machine, so the tests check it with the facts of an AVX2
and of an AVX-512 machine whatever CPU runs them. `tuning()` applies it to this
host and the process's environment, once.

The model. Splitting a kernel across threads pays when its work dwarfs handing
the parts to threads and joining them; work runs at the rate the vector units
take it. A split of ours pays `split` ns: the worker pool's hand-off when the pool
is on (codegen/llvm/thread_pool.py measure_split_ns: a worker kept awake, as
between the kernels of a call), else a thread start (NNGRAPH_THREAD_POOL=0); a
BLAS's own threads pay a thread start (they are woken, not handed a task):

    loop_split_work  = LOOP_PAYOFF x split (ns) x body ops per ns
                       body ops per ns = f32 lanes x GHz x VECTOR_OPS_PER_CYCLE
    own_split_work   = BLAS_PAYOFF x split (ns) x multiply-adds per ns
    blas_thread_work = BLAS_PAYOFF x thread start (ns) x multiply-adds per ns
                       multiply-adds per ns = f32 lanes (widest) x GHz x FMA_UNITS
    gemm_split_work  = GEMM_SPLIT_OVER_BLAS x blas_thread_work (own_split_work
                       with one BLAS thread)
    gemm_column_split_work = COLUMN_SPLIT_PARTS x own_split_work

Each rounded to a power of two, so small differences in a measured cost give the
same thresholds. The factors below are properties of the x86 cores (two vector
ALUs and two FMA pipes since Haswell and Zen) or policy ratios (how many times the
split cost a split must carry), not timings of one machine: the timings are the
host's own (clock, vector width, measured costs).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os

from codegen.host import HostFacts, host_facts

VECTOR_OPS_PER_CYCLE = 2   # vector ALU ports an x86 core issues to each cycle (Haswell/Zen on)
FMA_UNITS = 2              # FMA pipes per core: a GEMM's multiply-adds per lane per cycle
LOOP_PAYOFF = 8            # a split loop's work: at least this many thread start costs (a
                           # thread that starts late on a busy core must not dominate; CNN
                           # b64 kernels of 15-23 us took 46-55 us when split)
BLAS_PAYOFF = 4            # a BLAS call's work per thread woken, in thread start costs
GEMM_SPLIT_OVER_BLAS = 32  # our own row split of a GEMM halves each call's panel reuse:
                           # it needs this many times the work that wakes a BLAS thread
                           # (MLP inference b128: 1.4 ms on one thread, 1.7-8 ms split)
COLUMN_SPLIT_PARTS = 2     # a GEMM cut along its columns: at least two parts, each with
                           # the work that pays for handing it to one of our threads
COLUMN_TILE_VECTORS = 8    # column reductions keep 8 vectors of accumulators per tile
MAX_THREADS = 256


@dataclasses.dataclass(frozen=True)
class Tuning:
    """Thresholds of the CPU backend. `loop_threads`: threads a big loop kernel or
    GEMM is cut across; `blas_threads`: the BLAS's threads; `vector_bits`: the width
    LLVM vectorises loops for; `loop_split_work`: iterations x body ops above which
    a loop kernel is split; `blas_thread_work`: multiply-adds of one BLAS call below
    which it runs on one BLAS thread; `gemm_split_work`: multiply-adds above which a
    GEMM is cut into one single-threaded BLAS call per thread; `gemm_column_split_work`:
    the same when the output has more columns than rows and the cut is along the
    columns (each part re-packs only the small A: a product of few rows, an LSTM
    step's h @ W_hh with N=32 rows, which a BLAS's own threads barely speed up); at
    least two parts that each carry `own_split_work`; `column_tile`: columns per tile
    of a column reduction; `own_split_work`: the multiply-adds of a GEMM part worth
    handing to one of our threads; `split_ns`: what handing a part to one of our
    threads costs, the thresholds' unit (the worker pool's hand-off, or a thread's
    start with the pool off)."""
    loop_threads: int
    blas_threads: int
    vector_bits: int
    loop_split_work: int
    blas_thread_work: int
    gemm_split_work: int
    column_tile: int
    gemm_column_split_work: int
    own_split_work: int
    split_ns: float
    blas_call_threads: int


def pow2_round(x: float) -> int:
    """The power of two nearest to x on a log scale, from 1 to 2**56 (the thresholds
    are i64 constants in the generated code, some multiplied by GEMM_SPLIT_OVER_BLAS)."""
    return 1 << min(56, max(0, round(math.log2(max(x, 1.0)))))


def _positive_int(env, name, default, cap=None) -> int:
    raw = env.get(name, "")
    if not raw.strip():
        return default
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from None
    n = max(1, n)
    return min(cap, n) if cap else n


def vector_bits(facts: HostFacts, env) -> int:
    """NNGRAPH_VECTOR_BITS (128, 256 or 512, at most what the CPU has), default the
    widest the CPU has (LLVM's own default keeps 256 on AVX-512 Intel CPUs; on the
    elementwise benchmark 512 was faster: 4.1 vs 5.2 ms on one thread)."""
    raw = env.get("NNGRAPH_VECTOR_BITS", "").strip()
    if not raw:
        return facts.vector_bits
    if raw not in ("128", "256", "512"):
        raise ValueError(f"NNGRAPH_VECTOR_BITS must be 128, 256 or 512, got {raw!r}")
    if int(raw) > facts.vector_bits:
        raise ValueError(f"NNGRAPH_VECTOR_BITS={raw}: this CPU ({facts.cpu_model}) has "
                         f"{facts.vector_bits}-bit vectors at most")
    return int(raw)


def loop_threads(facts: HostFacts, env) -> int:
    """NNGRAPH_NUM_THREADS, default the CPUs this process may run on."""
    return _positive_int(env, "NNGRAPH_NUM_THREADS", min(MAX_THREADS, facts.logical_cpus), MAX_THREADS)


def blas_threads(facts: HostFacts, env) -> int:
    """NNGRAPH_BLAS_THREADS, default one per physical core the process may use (a
    GEMM kernel fills a core's FMA pipes: an SMT sibling adds nothing but contention)."""
    return _positive_int(env, "NNGRAPH_BLAS_THREADS", facts.physical_cores)


def blas_call_threads(facts: HostFacts, env, pool_split_ns: float | None) -> int:
    """Threads one BLAS call of the generated code may use: NNGRAPH_BLAS_THREADS when
    set; else one when our threads split the products through the worker pool (more
    than one loop thread, and a measured hand-off cheaper than the thread start that
    wakes a BLAS thread); else blas_threads (no pool: our split pays a thread start,
    as waking a BLAS thread does, and the BLAS's own split shares its packed panels).

    Why one: the cores get one team of waiting threads, not two. A pool worker spins
    after each task (thread_pool.py), a BLAS's own workers after each call (OpenBLAS:
    until its thread timeout), and on the same cores each team's spinners take time
    slices from the other's work: on a 2-core Xeon with OpenBLAS's two threads a LeNet
    step b64 took 2.6 ms and the MLP 784-512-256-10 step b128 2.0 ms, each call on one
    BLAS thread and the products split by the pool 1.7 and 1.5 ms; alone, half a
    product on one thread ran as fast as the whole on two (the MLP step's products:
    0.91 against 1.03 ms)."""
    if env.get("NNGRAPH_BLAS_THREADS", "").strip():
        return blas_threads(facts, env)
    pooled = pool_split_ns is not None and pool_split_ns < facts.thread_start_ns
    return 1 if pooled and loop_threads(facts, env) > 1 else blas_threads(facts, env)


def derive(facts: HostFacts, env=None, pool_split_ns: float | None = None) -> Tuning:
    """The thresholds for a host with `facts` and environment `env` (a mapping);
    `pool_split_ns`: the worker pool's hand-off cost when our splits go through the
    pool, None when they start threads (facts.thread_start_ns).

    The hand-off is measured to a worker that is awake (thread_pool.measure_split_ns),
    not asleep (measure_wake_ns), because that is how a split finds it: after each
    task a worker spins for the thread start cost (thread_pool.spin_bound_ns) before
    it sleeps, and the kernels of one call follow each other well within that, so
    only the first split of a call after an idle gap pays the wake-up (1.9 us against
    an 8.4 us thread start on the 2-core Xeon VM), less than every split paid before
    the pool. Pricing every split at the wake-up would give back the gain of splitting
    the smaller kernels (the MLP step b128: 1.30k us against 1.53k)."""
    env = {} if env is None else env
    bits = vector_bits(facts, env)
    split_ns = facts.thread_start_ns if pool_split_ns is None else pool_split_ns
    ops_per_ns = facts.lanes(bits) * facts.ghz * VECTOR_OPS_PER_CYCLE
    macs_per_ns = facts.lanes() * facts.ghz * FMA_UNITS
    blas_work = pow2_round(BLAS_PAYOFF * facts.thread_start_ns * macs_per_ns)
    own_work = pow2_round(BLAS_PAYOFF * split_ns * macs_per_ns)
    loops, blas = loop_threads(facts, env), blas_threads(facts, env)
    per_call = blas_call_threads(facts, env, pool_split_ns)
    return Tuning(loop_threads=loops, blas_threads=blas, vector_bits=bits,
                  loop_split_work=pow2_round(LOOP_PAYOFF * split_ns * ops_per_ns),
                  blas_thread_work=blas_work, gemm_split_work=gemm_split_work(blas_work, own_work, loops, per_call),
                  column_tile=COLUMN_TILE_VECTORS * facts.lanes(bits),
                  gemm_column_split_work=COLUMN_SPLIT_PARTS * own_work, own_split_work=own_work,
                  split_ns=split_ns, blas_call_threads=per_call)


def gemm_split_work(blas_work: int, own_work: int, loops: int, blas: int) -> int:
    """Multiply-adds above which our own threads split a GEMM, for a BLAS whose calls
    use `blas` threads. With several, GEMM_SPLIT_OVER_BLAS times the work that wakes one
    (the BLAS's own split is better below that). With one per call (blas_call_threads,
    MKL's sequential layer, NNGRAPH_BLAS_THREADS=1), our threads are the only way a GEMM
    uses more than one core: they split it from the work that pays for handing a
    part to one of them (`own_work`; ResNet-50 at batch 1 has no GEMM above 2**27
    multiply-adds: with one BLAS thread every one of them ran on one core)."""
    if blas == 1 and loops > 1:
        return own_work
    return blas_work * GEMM_SPLIT_OVER_BLAS


@functools.lru_cache(maxsize=None)
def tuning() -> Tuning:
    """This host's thresholds under this process's environment (read once); the
    pool's hand-off cost is measured (once per host) only when the pool is on."""
    from codegen.llvm.thread_pool import pool_enabled, split_cost_ns
    return derive(host_facts(), os.environ, split_cost_ns() if pool_enabled(os.environ) else None)
