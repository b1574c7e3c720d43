"""fn.profile(): where a compiled function's time goes, kernel by kernel, in the
terms of the graph the user built.

Each target times its kernels its own way, without touching the function's
state (parameters are read, never updated; the call's updates are dropped):

- cpu: the same Program compiled once more with the entry's per-kernel clocks
  (codegen/llvm/entry.py, profile=True), run `calls` times;
- reference: the Program interpreter with a clock around each kernel;
- gpu: the kernels launched one by one, synchronising the device around each.

A row per kernel or library call: its share of the kernel time, time per call,
the work it does for the bound sizes (multiply-adds of a product count 2 FLOPs,
a loop kernel's scalar ops per point; bytes = every buffer it reads or writes,
once), the achieved FLOP/s and GB/s, and the graph nodes it computes with the
file:line that built them. The host's own rates, measured once per process (a
32 MiB array copy for GB/s, a NumPy float32 GEMM for FLOP/s), put the achieved
rates in proportion.
"""
from __future__ import annotations

import math
import time

import numpy as np

from nngraph.textir import nested_value_names
from nngraph.types import concrete_shape, np_dtype
from passes.collective import AllReduceKernel
from passes.loop import ScanLoop
from passes.program import MatmulKernel

from .tables import TextTable, format_rows

NON_ARITH = {"idx", "size", "const", "load", "result", "acc", "cast", "stop_gradient"}
_MACHINE: dict = {}
REPEATS = 5


def _numel(shape, env) -> int:
    return int(np.prod(concrete_shape(shape, env), dtype=np.int64))


def _nbytes(program, b, env) -> int:
    buf = program.buffers[b]
    return _numel(buf.shape, env) * np_dtype(buf.dtype).itemsize


def _stage_ops(stage, points: int) -> int:
    return points * sum(1 for i in stage.body if i.op not in NON_ARITH)


def kernel_work(kernel, program, env) -> dict:
    """{"kind", "flops", "bytes"} of one kernel for the bound sizes `env` (a loop: its
    body's work times its length)."""
    if isinstance(kernel, AllReduceKernel):     # an MPI call: the packed buffer it sends
        return {"kind": f"all_reduce {kernel.step}", "flops": 0, "bytes": _nbytes(program, kernel.send, env)}
    if isinstance(kernel, ScanLoop):
        steps = int(concrete_shape((kernel.length,), env)[0])
        body = [kernel_work(k, program, env) for k in kernel.body]
        return {"kind": "loop of steps", "flops": steps * sum(w["flops"] for w in body),
                "bytes": steps * sum(w["bytes"] for w in body)}
    moved = sorted(kernel.reads() | kernel.writes())
    nbytes = sum(_nbytes(program, b, env) for b in moved)
    if isinstance(kernel, MatmulKernel):
        out = _numel(kernel.epilogue_domain(), env)
        flops = 2 * out * _numel(kernel.axes("k"), env)
        if kernel.epilogue is not None:
            flops += _stage_ops(kernel.epilogue, out)
        return {"kind": "contraction", "flops": flops, "bytes": nbytes}
    outer = _numel(kernel.outer, env)
    flops = sum(_stage_ops(s, outer * _numel(s.inner, env)) for s in kernel.stages)
    return {"kind": "loop", "flops": flops, "bytes": nbytes}


def machine_floor() -> dict:
    """The host's copy bandwidth (GB/s) and float32 GEMM rate (GFLOP/s), measured
    once per process (best of REPEATS) so achieved rates can be read against them.
    A measurement, not a peak: a busy machine lowers it, and a kernel whose data
    sits in cache can move bytes faster than a copy through memory."""
    if not _MACHINE:
        a = np.ones(1 << 23, np.float32)                # 32 MiB: beyond the caches
        b = np.empty_like(a)
        best = min(_timed(lambda: np.copyto(b, a)) for _ in range(REPEATS))
        _MACHINE["GB/s"] = 2 * a.nbytes / best / 1e9
        m = np.ones((512, 512), np.float32)
        m @ m                                            # BLAS starts its threads
        best = min(_timed(lambda: m @ m) for _ in range(REPEATS))
        _MACHINE["GFLOP/s"] = 2 * 512 ** 3 / best / 1e9
    return dict(_MACHINE)


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return max(time.perf_counter() - t0, 1e-9)


# ----------------------------------------------------------------------------- timers


def _time_cpu(runner, inputs, params, env, calls) -> np.ndarray:
    from codegen.llvm import compile_program
    prof = getattr(runner, "_profiled", None)
    if prof is None:   # the same runner class around the clocked build of the same Program
        prof = runner._profiled = type(runner)(runner.program, compile_program(runner.program, profile=True))
    prof.compiled.profile(reset=True)
    for _ in range(calls):
        prof.run(inputs, params, env)
    return prof.compiled.profile(reset=True) / 1e9


def _time_reference(runner, inputs, params, env, calls) -> np.ndarray:
    from passes.program_interpreter import run_program
    total = np.zeros(len(runner.program.schedule))
    for _ in range(calls):
        clock = []
        run_program(runner.program, inputs, params, env, clock=clock)
        total += clock
    return total


def _time_gpu(runner, inputs, params, env, calls) -> np.ndarray:
    import torch
    sync = torch.cuda.synchronize if runner.device != "cpu" else (lambda: None)
    total = np.zeros(len(runner.program.schedule))
    for _ in range(calls):
        b, bd = runner.bind(inputs, params, env)
        for kno in range(len(runner.program.schedule)):
            launch, syms = runner.module.SCHEDULE[kno]
            sync()
            t0 = time.perf_counter()
            with np.errstate(all="ignore"):
                launch(b, *[bd.sizes[s] for s in syms])
            sync()
            total[kno] += time.perf_counter() - t0
    return total


CONTRACTION_KIND = {"cpu": "library (BLAS)", "reference": "library (NumPy)", "gpu": "matmul kernel"}
TIMERS = {"cpu": _time_cpu, "reference": _time_reference, "gpu": _time_gpu}


# ----------------------------------------------------------------------------- the table


def _computes(program, position, names) -> list:
    nodes = program.nodes.computes_within(position) if program.nodes is not None else []
    return [{"node": "%" + names[id(n)], "op": n.op, "where": n.where} for n in nodes if id(n) in names]


def profile(fn, inputs, env, calls: int) -> TextTable:
    """Run fn's program `calls` times on `inputs` (checked arrays) and tabulate."""
    if calls < 1:
        raise ValueError(f"profile: calls must be >= 1, got {calls}")
    runner = fn.runner
    timer = TIMERS.get(fn.target)
    if timer is None or getattr(runner, "program", None) is None:
        raise TypeError(f"profile: a function for target {fn.target!r} built without a Program cannot be "
                        "profiled; compile it with ng.compile(..., target='cpu', 'gpu' or 'reference')")
    program = runner.program
    params = [p.value for p in fn._run_params]
    timer(runner, inputs, params, env, 1)            # warm up: bindings, caches, the profiled build
    t0 = time.perf_counter()
    seconds = timer(runner, inputs, params, env, calls) / calls
    wall = (time.perf_counter() - t0) / calls
    total = float(seconds.sum()) or 1e-12
    names = nested_value_names(fn._run_graph)
    rows = []
    for pos, kern in enumerate(program.schedule):
        work = kernel_work(kern, program, env)
        s = float(seconds[pos])
        rows.append({"kernel": kern.name, "kind": CONTRACTION_KIND[fn.target] if work["kind"] == "contraction"
                     else work["kind"], "seconds": s, "share": s / total,
                     "flops": work["flops"], "bytes": work["bytes"],
                     "GFLOP/s": work["flops"] / s / 1e9 if s > 0 else 0.0,
                     "GB/s": work["bytes"] / s / 1e9 if s > 0 else 0.0,
                     "computes": _computes(program, pos, names)})
    floor = machine_floor() if fn.target != "gpu" or runner.device == "cpu" else {}
    info = {"calls": calls, "target": fn.target, "kernel_seconds": total, "wall_seconds": wall,
            "sizes": dict(env), "machine": floor, "blas": (getattr(runner, "stats", None) or {}).get("blas", "")}
    return TextTable(_render(rows, info), rows, info)


def _render(rows, info) -> str:
    shown = []
    for r in sorted(rows, key=lambda r: -r["seconds"]):
        nodes = r["computes"]
        names = ", ".join(f"{c['node']} {c['op']} @{c['where']}" for c in nodes[:3])
        more = f" (+{len(nodes) - 3} more)" if len(nodes) > 3 else ""
        shown.append({"kernel": r["kernel"], "kind": r["kind"], "share": f"{100 * r['share']:5.1f}%",
                      "time": f"{1e6 * r['seconds']:.1f} us", "gflops": f"{r['GFLOP/s']:.2f}",
                      "gbs": f"{r['GB/s']:.2f}", "computes": names + more})
    cols = [("kernel", "kernel or library call"), ("kind", "kind"), ("share", "share"), ("time", "time/call"),
            ("gflops", "GFLOP/s"), ("gbs", "GB/s"), ("computes", "graph nodes (built at)")]
    head = (f"profile of {info['calls']} calls on {info['target']}, sizes {info['sizes'] or '{}'}: "
            f"kernels {1e6 * info['kernel_seconds']:.1f} us per call, whole call "
            f"{1e6 * info['wall_seconds']:.1f} us")
    if info["blas"]:
        head += f"\nBLAS: {info['blas']}"
    m = info["machine"]
    if m:
        head += f"\nthe host's rates, measured now: copy {m['GB/s']:.1f} GB/s, float32 GEMM {m['GFLOP/s']:.1f} GFLOP/s"
    return head + "\n" + format_rows(shown, cols, {"computes": 90, "kernel": 40})
