"""Compile times of the training steps of benchmarks/run.py (MLP 784-512-256-10 SGD
b128, LeNet-5 b64) and of benchmarks/lstm.py (ng.nn.LSTM(256) over T=50, b32), by
stage, on target="cpu".

    python benchmarks/compile_time.py [--rounds 5] [--only mlp,lenet,lstm] [--no-bytecode-cache]
                                      [--ab OTHER_CHECKOUT]

Each round starts fresh processes, per model:
  cold, first   the first ng.compile in a new process with an empty cache directory:
  on host       it also measures what nngraph measures once per host and keeps (the
                thread start cost, codegen/host.py; which BLAS is faster,
                codegen/llvm/blas_choice.py)
  cold          the first ng.compile in a new process whose cache directory holds
                only those per-host tables (a model never compiled before, on a host
                where nngraph has run): imports, passes, code generation, the
                convolution layouts timed at the model's shapes
  hit           the same graph compiled again in that process (compile-cache hit)
  hit, new      a second new process compiling the same graph: a hit that pays
  process       LLVM's start and opening the BLAS
and prints the median over rounds of the wall time and of the process's CPU time
(steadier on a loaded machine) of the ng.compile call alone (building the graph and
its gradient is not counted), then fn.stats()["compile_time"] stage by stage (the
LSTM's "hit" row builds a second layer, named lstm_2 where the first is lstm_1: the
compile cache keys a graph without its parameters' names, so it is a hit too). Goals
(issue 15): cold MLP <= 0.5 s, cold LeNet <= 1.0 s, hit <= 0.05 s.

Python's bytecode: an installed package has its modules compiled to .pyc (pip does
it at install time; a checkout writes __pycache__ at its first import), so the
children read compiled modules from a bytecode cache of their own
(PYTHONPYCACHEPREFIX in the round's temporary directory, filled by one untimed
process per model first). Where PYTHONDONTWRITEBYTECODE is set and no .pyc exist, every new
process compiles nngraph's ~100 modules from source again (about 0.05 s of a cold
compile): --no-bytecode-cache measures that, with the environment as it is.

A/B: --ab DIR compares this checkout ("A") with the one at DIR ("B", e.g. `git
archive main | tar -x -C DIR`): each round runs every model's processes for both,
in alternating order (A first in even rounds, B first in odd ones), so both see the
same load; each checkout has its own bytecode cache. The report gives each
checkout's medians and the load average before and after.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = ("mlp", "lenet", "lstm")


def _child(model: str) -> None:
    """Build the model's step graph, compile it twice, print the timings of the two
    ng.compile calls as JSON."""
    sys.path.insert(0, HERE)
    import nngraph as ng
    calls = []
    compile_ = ng.compile

    def timed(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn = compile_(*args, **kwargs)
        calls.append({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                      "stages": fn.stats()["compile_time"], "cache": fn.stats()["cache"]})
        return fn
    ng.compile = timed
    make = _maker(model)
    for _ in range(2):
        make()
    print(json.dumps(dict(zip(("first", "again"), calls))))


def _maker(model: str):
    """A callable that builds and compiles the model's training step."""
    if model == "lstm":
        path = list(sys.path)
        import lstm
        sys.path[:] = path      # lstm.py puts its checkout first; keep nngraph's own
        a = argparse.Namespace(T=50, N=32, F=256, H=256)
        return lambda: lstm._nngraph_step(a, "layer")
    workloads = _workloads()
    w = workloads.MLP((784, 512, 256, 10), 128) if model == "mlp" else workloads.CNN()
    make, _ = w.nngraph()
    return make


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


def _run_child(model: str, cache_dir: str, pycache, root: str = ROOT) -> dict:
    env = _child_env(cache_dir, pycache)
    if root != ROOT:          # an A/B run: the other checkout's packages, this benchmark's models
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                      if p and os.path.abspath(p) != ROOT])
    r = subprocess.run([sys.executable, __file__, "--child", model], env=env, capture_output=True, text=True,
                       timeout=600, cwd=root)
    if r.returncode != 0:
        raise RuntimeError(f"compile of {model} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _child_env(cache_dir: str, pycache) -> dict:
    env = dict(os.environ, NNGRAPH_CACHE_DIR=cache_dir)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def _warm_bytecode(models, pycache: str, root: str = ROOT) -> None:
    """One untimed process per model, which writes the .pyc of every module its
    compile imports."""
    for m in models:
        with tempfile.TemporaryDirectory(prefix="nngraph-ctime-") as d:
            _run_child(m, d, pycache, root)


HOST_TABLES = ("host-*.json", "blas-choice.json")   # measured once per host (codegen/host.py, blas_choice.py)


def _round(model: str, pycache, root: str = ROOT) -> dict:
    with tempfile.TemporaryDirectory(prefix="nngraph-ctime-") as first_dir, \
            tempfile.TemporaryDirectory(prefix="nngraph-ctime-") as d:
        first_on_host = _run_child(model, first_dir, pycache, root)
        for pattern in HOST_TABLES:
            for path in glob.glob(os.path.join(first_dir, pattern)):
                shutil.copy(path, d)
        first = _run_child(model, d, pycache, root)
        second = _run_child(model, d, pycache, root)
    return {"cold, first on host": first_on_host["first"], "cold": first["first"], "hit": first["again"],
            "hit, new process": second["first"]}


def _median(rows, kind, field):
    return statistics.median(r[kind][field] for r in rows)


def _report(model: str, rows: list) -> None:
    print(f"\n{model}: median of {len(rows)} rounds (cache: "
          + ", ".join(f"{k} -> {rows[0][k]['cache']}" for k in rows[0]) + ")")
    print(f"  {'':20} {'wall s':>8} {'cpu s':>8}")
    for kind in rows[0]:
        print(f"  {kind:20} {_median(rows, kind, 'wall'):8.3f} {_median(rows, kind, 'cpu'):8.3f}")
    stages = []
    for kind in rows[0]:
        stages += [s for s in rows[0][kind]["stages"] if s not in stages]
    width = max(10, *map(len, rows[0]))
    print("  by stage, ms (wall):  " + "  ".join(f"{k:>{width}}" for k in rows[0]))
    for s in stages:
        cells = []
        for kind in rows[0]:
            vals = [r[kind]["stages"].get(s) for r in rows]
            cells.append(f"{statistics.median(vals) * 1e3:{width}.1f}" if None not in vals else f"{'-':>{width}}")
        print(f"  {s:20} " + "  ".join(cells))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="children compile modules from source when the environment says so")
    ap.add_argument("--ab", metavar="DIR", help="compare with the checkout at DIR, alternating processes")
    ap.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child)
        return
    sys.path.insert(0, HERE)
    from machine import cpu_model
    models = [m for m in args.only.split(",") if m in MODELS]
    roots = {"": ROOT} if not args.ab else {"A (this checkout)": ROOT, f"B ({args.ab})": os.path.abspath(args.ab)}
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; load average {_load()}")
    rows = {(m, r): [] for m in models for r in roots}
    with tempfile.TemporaryDirectory(prefix="nngraph-pyc-") as pyc:
        pycache = None if args.no_bytecode_cache else pyc
        if pycache is not None:
            for root in roots.values():
                _warm_bytecode(models, pycache, root)
        print("Python bytecode: " + ("read from a cache (as installed)" if pycache else
                                     "as the environment has it (PYTHONDONTWRITEBYTECODE="
                                     f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})"))
        for i in range(args.rounds):          # models interleaved, round after round
            for m in models:
                for r in (list(roots) if i % 2 == 0 else list(roots)[::-1]):
                    rows[m, r].append(_round(m, pycache, roots[r]))
    print(f"load average after: {_load()}")
    for m in models:
        for r in roots:
            _report(f"{m} {r}".strip(), rows[m, r])


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())

if __name__ == "__main__":
    main()
