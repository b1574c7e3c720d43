"""Floors of the workloads, measured on this machine in the same run as the workloads
(benchmarks/run.py calls `measure` in a process of its own, one per round):

- bytes: the bytes a workload must move over the copy bandwidth, measured as a copy
  of the same number of bytes (half read, half written) with NumPy on 1 up to all
  cores (the halves copied by threads: np.copyto releases the GIL), the best rate;
- gemm: each product (m, k, n) a workload must do, timed with NumPy's float32 matmul
  at that very shape, its BLAS on 1 up to all cores (the best: a small product is
  fastest on one thread, and a busy machine starves a BLAS's spinning threads);
  the floor is the sum of those times.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def best_seconds(f, reps: int, min_time: float = 0.05) -> float:
    """Fastest of `reps` timed calls (after one warm-up), calling more often while
    `min_time` has not passed."""
    f()
    best, calls, t_end = float("inf"), 0, time.perf_counter() + min_time
    while calls < reps or time.perf_counter() < t_end:
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
        calls += 1
    return best


def copy_bandwidth(nbytes: int, reps: int = 10) -> float:
    """Bytes per second moved by the fastest copy of nbytes/2 bytes (read + write)."""
    n = max(1, nbytes // 8)
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    cores = len(os.sched_getaffinity(0))
    best = float("inf")
    with ThreadPoolExecutor(max_workers=cores) as pool:
        for k in range(1, cores + 1):
            cuts = np.linspace(0, n, k + 1).astype(int)

            def run():
                list(pool.map(lambda i: np.copyto(dst[cuts[i]:cuts[i + 1]], src[cuts[i]:cuts[i + 1]]), range(k)))
            best = min(best, best_seconds(run, reps))
    return 2 * src.nbytes / best


def gemm_seconds(m: int, k: int, n: int, reps: int = 10) -> float:
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    best = float("inf")
    for threads in range(1, len(os.sched_getaffinity(0)) + 1):
        with threadpool_limits(threads, user_api="blas"):
            best = min(best, best_seconds(lambda: np.matmul(a, b, out=c), reps))
    return best


def measure(parts, reps: int = 10) -> dict:
    """{"seconds": floor, "what": how it was made} for a workload's floor_parts()."""
    total, what = 0.0, []
    for kind, arg in parts:
        if kind == "bytes":
            bw = copy_bandwidth(arg, reps)
            total += arg / bw
            what.append(f"{arg / 1e6:.1f} MB at {bw / 1e9:.1f} GB/s copy")
        elif kind == "gemm":
            t = gemm_seconds(*arg, reps=reps)
            total += t
            what.append(f"{arg[0]}x{arg[1]}x{arg[2]} {2 * np.prod(arg) / t / 1e9:.0f} GFLOP/s")
        else:
            raise ValueError(f"unknown floor part {kind!r}")
    return {"seconds": total, "what": "; ".join(what)}
