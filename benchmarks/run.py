"""nngraph target="cpu" against NumPy by hand, PyTorch eager, torch.compile, JAX jit
and PyTensor (each when installed; `pip install -e .[bench]` adds JAX and PyTensor),
on this machine, with the floors measured in the same run.

    python benchmarks/run.py [--rounds 3] [--quick] [--only NAME,...] [--isa avx2]

How. Each framework runs in a process of its own (threads of one runtime disturb
another's in the same process), and so do the floor measurements
(benchmarks/floors.py). A round runs every framework's process once, in an order
rotated from round to round; each process times each workload for about a second
after warm-up and reports the median call (and the fastest). The table gives the
median of the rounds, in microseconds per call, each workload's floor (measured in every round,
the median taken), nngraph's ratio to the floor and to the best peer (the fastest
of PyTorch eager, torch.compile, JAX jit and PyTensor), and the 1-minute load
average over the processes that measured the row (the machine may be shared). A
second table gives the fastest call of all rounds, what a quiet machine would
give: on a busy one, a multi-threaded BLAS waiting for its workers' time slices
dominates the medians.

It prints the CPU model and its vector extensions, cores and caches first:
the figures belong to that CPU. Compile times: nngraph cold (empty cache
directory) and warm (the same graph again, a disk-cache hit), from the first round;
the others' first call.

--isa avx2 holds every framework (and the floors' NumPy) to AVX2+FMA code paths, each
in its own process, and prints what was checked to hold (benchmarks/isa.py): an
emulation of an AVX2 machine on this CPU, not a measurement of one.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

import numpy as np  # noqa: E402

import workloads as W  # noqa: E402
from isa import ISAS, framework_env, header, not_held, probe_all  # noqa: E402
from machine import cpu_model  # noqa: E402
from report import PEERS, print_report  # noqa: E402

COLUMNS = ("nngraph cpu", "NumPy") + PEERS
# column -> (module to look for, framework to load in its process)
FRAMEWORKS = {"nngraph cpu": ("nngraph", "nngraph"), "NumPy": ("numpy", "numpy"),
              "torch eager": ("torch", "torch"), "torch.compile": ("torch", "torch.compile"),
              "JAX jit": ("jax", "jax"), "PyTensor": ("pytensor", "pytensor"), "floor": ("numpy", "floor")}


def timeit(f, budget):
    """[median, fastest] seconds per call of f() after warm-up (at least 5 calls, about
    `budget` s)."""
    for _ in range(3):
        f()
    times, t_end = [], time.perf_counter() + budget
    while len(times) < 5 or time.perf_counter() < t_end:
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
        if len(times) > 5000:
            break
    return [statistics.median(times), min(times)]


def first_call(make):
    """(callable, seconds to build it and make its first call, what that call returned)."""
    t = time.perf_counter()
    f = make()
    out = f()
    return f, time.perf_counter() - t, out


def max_rel_diff(got, want):
    """Largest difference between corresponding outputs, relative to the largest
    magnitude of the reference output."""
    got = got if isinstance(got, (list, tuple)) else [got]
    want = want if isinstance(want, (list, tuple)) else [want]
    worst = 0.0
    for g, r in zip(got, want):
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        worst = max(worst, float(np.max(np.abs(g - r))) / max(float(np.max(np.abs(r))), 1e-30))
    return worst


# ----------------------------------------------------------------------------- one process


def _nngraph(w, budget, notes):
    make, caller = w.nngraph()
    t = time.perf_counter()
    fn = make()
    cold = time.perf_counter() - t
    t = time.perf_counter()
    fn2 = make()
    warm = time.perf_counter() - t
    notes.append(f"nngraph cold / warm cache: {cold:.3f} s / {warm:.3f} s (cache_hit={fn2.stats()['cache_hit']})")
    return timeit(caller(fn), budget)


def _compiled(make, label, budget, notes):
    f, secs, _ = first_call(make)
    notes.append(f"{label} first call: {secs:.2f} s")
    return timeit(f, budget)


def _pytensor(w, budget, notes):
    f, secs, out = first_call(w.pytensor)
    notes.append(f"PyTensor compile + first call: {secs:.2f} s")
    if w.numpy is not None:      # the first three calls against NumPy from the same parameters
        ref = w.numpy()
        err = max([max_rel_diff(out, ref())] + [max_rel_diff(f(), ref()) for _ in range(2)])
        notes.append(f"PyTensor vs NumPy, first three calls: {err:.1e} ({'ok' if err <= 1e-4 else 'DIFFERS'})")
    if getattr(w, "pytensor_note", None):
        notes.append(f"PyTensor: {w.pytensor_note}")
    return timeit(f, budget)


def measure_one(column, w, budget, notes):
    """[median, fastest] seconds per call of workload `w` under `column`'s framework,
    or None where it has no version of it."""
    if column == "nngraph cpu":
        return _nngraph(w, budget, notes)
    if column == "NumPy":
        return None if w.numpy is None else timeit(w.numpy(), budget)
    if column == "torch eager":
        return timeit(w.torch(), budget)
    if column == "torch.compile":
        return _compiled(lambda: w.torch(compiled=True), "torch.compile", budget, notes)
    if column == "JAX jit":
        return _compiled(w.jax, "jax.jit", budget, notes)
    return _pytensor(w, budget, notes)


def worker(column, names, budget):
    """Time every workload in `names` under `column` (or measure their floors); one
    JSON line on stdout."""
    load0 = os.getloadavg()[0]
    chosen = [w for w in W.all_workloads() if w.name in names]
    out = {"column": column, "results": {}, "notes": {}}
    if column == "floor":
        import floors
        for w in chosen:
            out["results"][w.name] = floors.measure(w.floor_parts())
    else:
        W.load(FRAMEWORKS[column][1])
        for w in chosen:
            notes = out["notes"].setdefault(w.name, [])
            try:
                out["results"][w.name] = measure_one(column, w, budget, notes)
            except Exception as e:   # a workload a framework cannot take is reported, not hidden
                out["results"][w.name] = f"error: {type(e).__name__}: {str(e)[:60]}"
    out["load"] = [load0, os.getloadavg()[0]]
    print(json.dumps(out))


if __name__ == "__main__" and "--worker" in sys.argv:
    _a = argparse.ArgumentParser()
    _a.add_argument("--worker")
    _a.add_argument("--names")
    _a.add_argument("--budget", type=float)
    _args = _a.parse_args()
    worker(_args.worker, json.loads(_args.names), _args.budget)
    sys.exit(0)

def installed_columns():
    return [c for c in COLUMNS if importlib.util.find_spec(FRAMEWORKS[c][0]) is not None]


def run_rounds(columns, names, rounds, budget, base_env, isa="native"):
    """{column: [one worker's output per round]}, the columns' order rotated per round;
    each worker's environment `base_env` (with the run's fresh NNGRAPH_CACHE_DIR) as its
    framework's settings under `isa` change it (benchmarks/isa.py)."""
    runs = {c: [] for c in columns + ["floor"]}
    order = ["floor"] + columns
    envs = {c: framework_env(FRAMEWORKS[c][1], isa, base_env) for c in order}
    for r in range(rounds):
        k = r % len(order)
        for column in order[k:] + order[:k]:
            print(f"... round {r + 1}/{rounds}: {column} (load {os.getloadavg()[0]:.1f}, "
                  f"{time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", column,
                                "--names", json.dumps(names), "--budget", str(budget)],
                               capture_output=True, text=True, env=envs[column])
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
            if p.returncode or not lines:
                tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
                runs[column].append({"results": {n: f"error: process failed: {tail[0][:80]}" for n in names},
                                     "notes": {}, "load": list(os.getloadavg()[:1]) * 2})
            else:
                runs[column].append(json.loads(lines[-1]))
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one round, a fraction of a second per workload")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--only", default="", help="comma-separated substrings of workload names")
    ap.add_argument("--isa", choices=ISAS, default="native",
                    help="avx2: every framework held to AVX2+FMA code paths (an emulation; benchmarks/isa.py)")
    args = ap.parse_args(argv)
    names = [w.name for w in W.all_workloads()]
    if args.only:
        keys = [k.strip().lower() for k in args.only.split(",")]
        names = [n for n in names if any(k in n.lower() for k in keys)]
    columns = installed_columns()
    rounds, budget = (1, 0.2) if args.quick else (max(1, args.rounds), 1.0)
    base = dict(os.environ, NNGRAPH_CACHE_DIR=tempfile.mkdtemp(prefix="nngraph-bench-cache-"))
    runs = run_rounds(columns, names, rounds, budget, base, args.isa)
    # the checks and the report's nngraph lines (facts, thresholds, the BLAS chosen) after
    # the rounds, as the workers saw them: their settings and their cache directory, where
    # they stored the BLAS choice (before, they would have made that choice for the workers)
    checks = probe_all(args.isa, list(dict.fromkeys(FRAMEWORKS[c][1].split(".")[0] for c in columns)), base)
    os.environ.update(framework_env("nngraph", args.isa, base))
    print_report(cpu_model(), columns, names, runs, missing=[c for c in COLUMNS if c not in columns],
                 isa_lines=(header(cpu_model(), checks), not_held(checks)))


if __name__ == "__main__":
    main()
