"""The printed report of benchmarks/run.py: the machine first (CPU model, vector
extensions, cores, caches, BLAS settings), then the table of medians over rounds
with floors and ratios, the floors' makings, compile times and notes."""
from __future__ import annotations

import importlib.metadata
import os
import statistics
import sys

from machine import cpu_flags  # benchmarks/machine.py, beside this module

PEERS = ("torch eager", "torch.compile", "JAX jit", "PyTensor")


def machine_lines(cpu: str) -> list:
    lines = [f"CPU: {cpu}", f"vector extensions: {' '.join(cpu_flags()) or 'unknown'}"]
    try:   # machine.py put the repository on sys.path
        from codegen.host import host_facts
        from codegen.tuning import tuning
        from codegen.llvm.thread_pool import pool_enabled
        f, t = host_facts(), tuning()
        lines.append(f"cores: {f.logical_cpus} CPUs, {f.physical_cores} physical; {f.ghz:.2f} GHz; caches L1d "
                     f"{f.l1d >> 10} KiB, L2 {f.l2 >> 10} KiB, L3 {f.l3 >> 20} MiB; thread start "
                     f"{f.thread_start_ns / 1e3:.1f} us; worker pool hand-off "
                     + (f"{t.split_ns / 1e3:.2f} us" if pool_enabled() else "none (pool off)"))
        lines.append(f"nngraph thresholds (codegen/tuning.py): {t}")
        from codegen.llvm.blas import describe      # chosen (timed once per host) before any worker runs
        lines.append(f"nngraph BLAS (codegen/llvm/blas.py): {describe()}")
    except Exception as e:   # the report still prints the rest
        lines.append(f"host facts unavailable: {type(e).__name__}: {e}")
    blas = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "NNGRAPH_BLAS", "NNGRAPH_BLAS_CORETYPE", "NNGRAPH_MKL_THREADING",
                                       "NNGRAPH_BLAS_THREADS", "NNGRAPH_NUM_THREADS", "NNGRAPH_CPU_FEATURES",
                                       "MKL_ENABLE_INSTRUCTIONS") if k in os.environ}
    lines.append(f"environment: {blas or 'no BLAS or thread settings'}")
    versions = []
    for pkg in ("numpy", "scipy", "llvmlite", "torch", "jax", "jaxlib", "pytensor"):
        try:
            versions.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    lines.append("versions: " + ", ".join(versions) + f"; Python {sys.version.split()[0]}")
    return lines


def median_of(runs, name, fastest=False):
    """Median over rounds of the medians recorded for `name` (fastest: the fastest call
    of all rounds), or the first error text."""
    vals = [r["results"].get(name) for r in runs]
    nums = [v for v in vals if isinstance(v, list)]
    if nums:
        return min(v[1] for v in nums) if fastest else statistics.median(v[0] for v in nums)
    errs = [v for v in vals if isinstance(v, str)]
    return errs[0] if errs else None


def floor_of(runs, name):
    vals = [r["results"][name] for r in runs if isinstance(r["results"].get(name), dict)]
    if not vals:
        return None, ""
    return statistics.median(v["seconds"] for v in vals), vals[0]["what"]


def fmt(v) -> str:
    if v is None:
        return "—"
    return v if isinstance(v, str) else f"{v * 1e6:,.0f}"


def table_row(name, columns, runs, fastest=False):
    cells = {c: median_of(runs[c], name, fastest) for c in columns}
    floor, _ = floor_of(runs["floor"], name)
    ours = cells.get("nngraph cpu")
    peers = [cells[c] for c in PEERS if isinstance(cells.get(c), float)]
    best = min(peers) if peers else None
    loads = [x for c in list(columns) + ["floor"] for r in runs[c] for x in r.get("load", [])]
    ok = isinstance(ours, float)
    out = [name] + [fmt(cells[c]) for c in columns] + [fmt(floor)]
    out.append(f"{ours / floor:.2f}x" if ok and floor else "—")
    out.append(f"{ours / best:.2f}x" if ok and best else "—")
    out.append(f"{min(loads):.1f}–{max(loads):.1f}" if loads else "—")
    return out


def print_report(cpu, columns, names, runs, missing=(), isa_lines=((), "")):
    """isa_lines: (lines after the machine's, the tables' caption) under --isa (benchmarks/isa.py)."""
    print("\n".join(machine_lines(cpu) + list(isa_lines[0])))
    rounds = max(len(v) for v in runs.values())
    caption = f"; {isa_lines[1]}" if isa_lines[1] else ""
    print(f"\nmedian microseconds per call, median of {rounds} interleaved round(s), each framework "
          f"in its own process (lower is better){caption}\n")
    head = ["workload"] + list(columns) + ["floor", "nngraph / floor", "nngraph / best peer", "load avg"]
    for fastest in (False, True):
        if fastest:
            print("\nfastest call of all rounds, microseconds (what a quiet machine gives)\n")
        print("| " + " | ".join(head) + " |")
        print("|---" * len(head) + "|")
        for name in names:
            print("| " + " | ".join(table_row(name, columns, runs, fastest)) + " |")
    print("\nfloors (measured in the same run; bytes at the copy bandwidth, products at NumPy's "
          "sgemm rate at their own shapes)")
    for name in names:
        floor, what = floor_of(runs["floor"], name)
        print(f"  {name}: {fmt(floor)} us = {what}")
    print("\ncompile times and notes (first round)")
    for c in columns:
        first = runs[c][0] if runs[c] else {}
        for name, notes in first.get("notes", {}).items():
            for note in dict.fromkeys(notes):
                print(f"  {name}: {note}")
    if missing:
        print(f"\nnot installed (not measured): {', '.join(missing)}")
