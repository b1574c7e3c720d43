"""Data-parallel training on this machine: the MLP and CNN training steps as
1 process x 2 threads against 2 processes (MPI) x 1 thread, same global batch.

    python benchmarks/distributed.py [--steps N]      (needs mpi4py + mpiexec:
                                                       pip install "nngraph[distributed]")

The launcher runs one worker per configuration (NNGRAPH_NUM_THREADS and
NNGRAPH_BLAS_THREADS set to the threads per process) and prints a table: global
examples per second, median step time and, for the job, the time per step spent in
the step's all-reduce kernels (NNGRAPH_PROFILE=1 timers inside the compiled
entry: the MPI_Iallreduce starts and MPI_Waits of its buckets; that includes waiting
for the slower rank, not the kernels that run while a reduction is in flight; the
count in parentheses is the buckets). The single process runs the plain
training step (no all_reduce); the job runs fit(distributed=True)'s step.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py, beside this script)

MODELS = {"MLP 784-512-256-10": (128, (784,)), "LeNet-5 CNN": (64, (1, 28, 28))}


def build(name):
    import nngraph as ng
    L = ng.nn
    ng.nn.set_seed(0)
    if name.startswith("MLP"):
        layers = [L.Dense(512, activation="relu"), L.Dense(256, activation="relu"), L.Dense(10)]
    else:
        layers = [L.Conv2D(6, 5, padding=2, activation="relu"), L.MaxPool2D(2),
                  L.Conv2D(16, 5, activation="relu"), L.MaxPool2D(2), L.Flatten(),
                  L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dense(10)]
    model = L.Sequential(layers, input_shape=MODELS[name][1])
    model.compile(ng.optim.SGD(0.01), "cross_entropy", target="cpu")
    return model


def worker(steps: int) -> None:
    import nngraph as ng
    from nngraph.nn.distributed_fit import shard, train_step
    from passes.collective import AllReduceKernel
    rank, ranks = ng.distributed.rank(), ng.distributed.size()
    for name, (batch, shape) in MODELS.items():
        model = build(name)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((batch,) + shape).astype(np.float32)
        Y = rng.integers(0, 10, batch).astype(np.int32)
        if ranks > 1:
            fn = train_step(model)
            idx = shard(np.arange(batch), rank, ranks)
            args = (X[idx], Y[idx], np.float32(1.0))
        else:
            fn, args = model.compiled("train"), (X, Y)
        for _ in range(5):
            fn(*args)
        ng.distributed.barrier()
        prof = fn.runner.compiled
        prof.profile(reset=True)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
        ns = prof.profile()
        sched = fn.runner.program.schedule
        ar = sum(int(ns[k]) for k, kern in enumerate(sched) if isinstance(kern, AllReduceKernel)) if ns is not None else 0
        med = float(np.median(times))
        starts = [k for k in sched if isinstance(k, AllReduceKernel) and k.step == "start"]
        packed = sum(fn.runner.program.buffers[k.send].shape[0] for k in starts)
        if rank == 0:
            print(json.dumps({"model": f"{name} b{batch}", "ranks": ranks, "step_ms": 1e3 * med,
                              "examples_per_s": batch / med, "allreduce_ms": 1e-6 * ar / steps,
                              "bare_ms": bare_allreduce_ms(packed) if ranks > 1 else 0.0, "floats": packed,
                              "calls": len(starts)}), flush=True)
        else:
            bare_allreduce_ms(packed) if ranks > 1 else None


def bare_allreduce_ms(n: int, calls: int = 50) -> float:
    """Median time of mpi4py's Allreduce of n float32 with both ranks ready (after a
    barrier): the cost of the communication itself, without waiting for a slower rank."""
    from nngraph import distributed
    comm = distributed.mpi().COMM_WORLD
    a, b, times = np.ones(n, np.float32), np.empty(n, np.float32), []
    for _ in range(calls):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(a, b)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def launch(steps: int) -> None:
    here = os.path.abspath(__file__)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    runs = [("1 process x 2 threads", 2, [sys.executable, here, "--worker"]),
            ("2 processes x 1 thread", 1, [mpiexec, "-n", "2", sys.executable, here, "--worker"])]
    rows = []
    for label, threads, cmd in runs:
        env = dict(os.environ, NNGRAPH_NUM_THREADS=str(threads), NNGRAPH_BLAS_THREADS=str(threads),
                   OMP_NUM_THREADS=str(threads), NNGRAPH_PROFILE="1", PYTHONPATH=ROOT)
        r = subprocess.run(cmd + ["--steps", str(steps)], env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"{label} failed:\n{r.stdout}\n{r.stderr}")
        rows += [(label, json.loads(ln)) for ln in r.stdout.splitlines() if ln.startswith("{")]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; {steps} timed steps per row (medians)")
    print("all-reduce: time per step in the step's MPI calls (starts and waits of its buckets, waiting for "
          "the other rank included; buckets in parentheses); bare: one Allreduce of as many floats with both "
          "ranks ready")
    print(f"{'model':26} {'configuration':23} {'step ms':>8} {'examples/s':>10} {'all-reduce ms':>14} "
          f"{'bare ms':>8} {'floats':>8}")
    for label, d in sorted(rows, key=lambda r: r[1]["model"]):
        dp = d["ranks"] > 1
        ar = f"{d['allreduce_ms']:.3f} ({d['calls']})" if dp else "-"
        bare = f"{d['bare_ms']:.3f}" if dp else "-"
        print(f"{d['model']:26} {label:23} {d['step_ms']:8.3f} {d['examples_per_s']:10.0f} {ar:>14} "
              f"{bare:>8} {d['floats'] if dp else '-':>8}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    worker(a.steps) if a.worker else launch(a.steps)


if __name__ == "__main__":
    main()
