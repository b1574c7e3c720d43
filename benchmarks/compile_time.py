"""Compile times of the training steps of benchmarks/run.py (MLP 784-512-256-10 SGD
b128, LeNet-5 b64), by stage, on target="cpu".

    python benchmarks/compile_time.py [--rounds 5] [--only mlp,lenet]

Each round starts fresh processes with an empty cache directory, per model:
  cold        the first ng.compile in a new process (imports it triggers included)
  hit         the same graph compiled again in that process (compile-cache hit)
  hit, new    a second new process compiling the same graph: a hit that pays the
  process     imports and LLVM's start-up
and prints the median over rounds of the wall time and of the process's CPU time
(steadier on a loaded machine), then fn.stats()["compile_time"] stage by stage. Goals
(issue 15): cold MLP <= 0.5 s, cold LeNet <= 1.0 s, hit <= 0.05 s.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = ("mlp", "lenet")


def _child(model: str) -> None:
    """Build the model's step graph, compile it twice, print the timings as JSON."""
    sys.path.insert(0, HERE)
    workloads = _workloads()
    w = workloads.MLP((784, 512, 256, 10), 128) if model == "mlp" else workloads.CNN()
    make, _ = w.nngraph()
    out = {}
    for what in ("first", "again"):
        wall, cpu = time.perf_counter(), time.process_time()
        fn = make()
        out[what] = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                     "stages": fn.stats()["compile_time"], "cache": fn.stats()["cache"]}
    print(json.dumps(out))


def _workloads():
    """The benchmark models with nothing but nngraph imported (no other framework's
    libraries preloaded): benchmarks/workloads.py where it exists, else run.py."""
    try:
        import workloads
        workloads.load("nngraph")
    except ImportError:
        for peer in ("torch", "jax", "pytensor"):  # run.py imports them when installed
            sys.modules[peer] = None
        import run as workloads
    return workloads


def _run_child(model: str, cache_dir: str) -> dict:
    env = dict(os.environ, NNGRAPH_CACHE_DIR=cache_dir)
    r = subprocess.run([sys.executable, __file__, "--child", model], env=env, capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"compile of {model} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _round(model: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="nngraph-ctime-") as d:
        first = _run_child(model, d)
        second = _run_child(model, d)
    return {"cold": first["first"], "hit": first["again"], "hit, new process": second["first"]}


def _median(rows, kind, field):
    return statistics.median(r[kind][field] for r in rows)


def _report(model: str, rows: list) -> None:
    print(f"\n{model}: median of {len(rows)} rounds (cache: "
          + ", ".join(f"{k} -> {rows[0][k]['cache']}" for k in rows[0]) + ")")
    print(f"  {'':18} {'wall s':>8} {'cpu s':>8}")
    for kind in rows[0]:
        print(f"  {kind:18} {_median(rows, kind, 'wall'):8.3f} {_median(rows, kind, 'cpu'):8.3f}")
    stages = []
    for kind in rows[0]:
        stages += [s for s in rows[0][kind]["stages"] if s not in stages]
    print("  by stage, ms (wall):  " + "  ".join(f"{k:>10}" for k in rows[0]))
    for s in stages:
        cells = []
        for kind in rows[0]:
            vals = [r[kind]["stages"].get(s) for r in rows]
            cells.append(f"{statistics.median(vals) * 1e3:10.1f}" if None not in vals else f"{'-':>10}")
        print(f"  {s:20} " + "  ".join(cells))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child)
        return
    sys.path.insert(0, HERE)
    from machine import cpu_model
    models = [m for m in args.only.split(",") if m in MODELS]
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    rows = {m: [] for m in models}
    for _ in range(args.rounds):          # models interleaved, round after round
        for m in models:
            rows[m].append(_round(m))
    for m in models:
        _report(m, rows[m])


if __name__ == "__main__":
    main()
