"""The BLAS candidates of target="cpu" (codegen/llvm/blas.py) at our shapes: scipy's
OpenBLAS and, with the `mkl` wheel, Intel MKL under each threading layer that can
run here (one process per layer: MKL takes its layer once per process), sgemm on
one thread and on NNGRAPH_BLAS_THREADS, rounds interleaved, GFLOP/s of the median
round (each round: the best of many calls, wall time); then what NNGRAPH_BLAS=auto
chose on this host and the measurement it chose by (codegen/llvm/blas_choice.py).

    python benchmarks/blas_choice.py [--rounds 3] [--quick]

Shapes: the ones the choice times (a recurrent step, an MLP layer, an im2col
convolution and its filter gradient), then the GEMMs of benchmarks/run.py's
workloads (--quick: only the first four).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..")]


def shapes(quick: bool) -> list:
    from codegen.llvm.blas_choice import SHAPES
    out = [tuple(s) for s in SHAPES]
    if quick:
        return out
    import workloads as W
    for w in W.all_workloads():
        for kind, arg in w.floor_parts():
            if kind == "gemm" and (*arg, False, False) not in out:
                out.append((*arg, False, False))
    return out


def worker(quick: bool) -> None:
    """One process: both candidates (MKL under NNGRAPH_MKL_THREADING), JSON rates."""
    from codegen.llvm import blas, mkl
    from codegen.llvm.blas_choice import time_candidates
    usable = {"openblas": blas.candidate_addresses("openblas")}
    if mkl.installed():
        usable["mkl"] = blas.candidate_addresses("mkl")
    res = time_candidates(usable, blas.configured_threads(), shapes(quick), rounds=50, budget_s=1.5)
    print(json.dumps(res["gflops"]))


def layers() -> list:
    """The MKL threading layers this host can load (sequential first), or none."""
    from codegen.llvm import blas, mkl
    found = [lay for lay in ("sequential", "gnu", "intel") if mkl.layer_available(lay)]
    return found if blas.configured_threads() > 1 else found[:1]


def run_rounds(rounds: int, quick: bool) -> dict:
    """{column: [rates per round]}: column "openblas" or "mkl/<layer>"."""
    runs = {"openblas": []}
    lays = layers()
    runs.update({f"mkl/{lay}": [] for lay in lays})
    for r in range(rounds):
        order = (lays[r % len(lays):] + lays[:r % len(lays)]) if lays else [""]
        for lay in order:
            env = dict(os.environ, NNGRAPH_MKL_THREADING=lay) if lay else dict(os.environ)
            p = subprocess.run([sys.executable, __file__, "--worker"] + ["--quick"] * quick,
                               capture_output=True, text=True, env=env)
            if p.returncode:
                raise SystemExit(f"worker (MKL layer {lay or '-'}) failed:\n{p.stderr}")
            rates = json.loads(p.stdout.strip().splitlines()[-1])
            runs["openblas"].append(rates["openblas"])
            if lay:
                runs[f"mkl/{lay}"].append(rates["mkl"])
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    from codegen.llvm import blas
    from machine import cpu_flags, cpu_model
    runs = run_rounds(args.rounds, args.quick)
    labels = list(runs["openblas"][0])
    print(f"CPU: {cpu_model()} ({' '.join(cpu_flags())}); load average {os.getloadavg()[0]:.1f}; "
          f"sgemm GFLOP/s (median of {args.rounds} rounds, each the best of many calls); "
          f"/1: one BLAS thread, /{blas.configured_threads()}: NNGRAPH_BLAS_THREADS\n")
    cols = list(runs)
    print("| m x k x n / threads | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for label in labels:
        cells = [statistics.median(run[label] for run in runs[c]) for c in cols]
        print(f"| {label} | " + " | ".join(f"{c:,.0f}" for c in cells) + " |")
    entry = blas.choice_measurement()
    print(f"\nNNGRAPH_BLAS={os.environ.get('NNGRAPH_BLAS', 'auto') or 'auto'}: the generated code calls "
          f"{blas.describe()}")
    if entry:
        totals = ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in entry["seconds"].items())
        print(f"chosen by timing the choice's shapes on one and all BLAS threads (total: {totals}; "
              f"{entry.get('timing_seconds', 0):.2f} s of timing, stored in the cache directory)")


if __name__ == "__main__":
    worker("--quick" in sys.argv) if "--worker" in sys.argv else main()
