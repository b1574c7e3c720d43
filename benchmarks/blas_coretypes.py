"""scipy's OpenBLAS at the shapes of benchmarks/run.py's workloads, under each core
type this CPU can run (OPENBLAS_CORETYPE: the AVX2 kernels and, on an AVX-512 CPU,
the AVX-512 ones), one process per core type, one BLAS thread, rounds interleaved.

    python benchmarks/blas_coretypes.py [--rounds 3]

Times are the thread's CPU time per call (fastest of many), which a busy machine
disturbs less than wall time. This is how the default of NNGRAPH_BLAS_CORETYPE=host
was chosen (codegen/llvm/blas.py: host_core_type).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..")]


def shapes():
    import workloads as W
    out = []
    for w in W.all_workloads():
        out += [tuple(arg) for kind, arg in w.floor_parts() if kind == "gemm" and tuple(arg) not in out]
    return out


def worker():
    import numpy as np
    from scipy.linalg import blas as sblas
    from threadpoolctl import threadpool_limits
    res = {}
    with threadpool_limits(1):
        for m, k, n in shapes():
            a = np.asfortranarray(np.random.default_rng(0).standard_normal((m, k)), np.float32)
            b = np.asfortranarray(np.random.default_rng(1).standard_normal((k, n)), np.float32)
            sblas.sgemm(1.0, a, b)
            best, t_end = float("inf"), time.perf_counter() + 0.3
            while time.perf_counter() < t_end:
                t = time.thread_time()
                sblas.sgemm(1.0, a, b)
                best = min(best, time.thread_time() - t)
            res[f"{m}x{k}x{n}"] = best
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from codegen.host import host_facts
    from machine import cpu_model
    types = ["Haswell", "Zen"] + (["SkylakeX", "SapphireRapids"] if host_facts().vector_bits >= 512 else [])
    runs = {t: [] for t in types}
    for r in range(args.rounds):
        for t in types[r % len(types):] + types[:r % len(types)]:
            p = subprocess.run([sys.executable, __file__, "--worker"], capture_output=True, text=True,
                               env=dict(os.environ, OPENBLAS_CORETYPE=t))
            runs[t].append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(f"CPU: {cpu_model()}; load average {os.getloadavg()[0]:.1f}; one BLAS thread; "
          f"microseconds of CPU time per sgemm, median of {args.rounds} rounds\n")
    print("| m x k x n | " + " | ".join(types) + " |")
    print("|---" * (len(types) + 1) + "|")
    for shape in runs[types[0]][0]:
        cells = [statistics.median(run[shape] for run in runs[t]) * 1e6 for t in types]
        print(f"| {shape} | " + " | ".join(f"{c:,.0f}" for c in cells) + " |")
    totals = [sum(statistics.median(run[s] for run in runs[t]) for s in runs[t][0]) * 1e6 for t in types]
    print("| all | " + " | ".join(f"{c:,.0f}" for c in totals) + " |")


if __name__ == "__main__":
    worker() if "--worker" in sys.argv else main()
