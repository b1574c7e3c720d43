"""Host-side cost of a target="gpu" call with device inputs: where the time goes.

    python benchmarks/gpu_overhead.py          (CUDA device: the four workloads of
                                                benchmarks/gpu.py, well under a minute)
    TRITON_INTERPRET=1 python benchmarks/gpu_overhead.py --host
                                               (no GPU: the host path alone, see below)

On a CUDA device: each workload of benchmarks/gpu.py (same sizes) is compiled and
warmed up; the script prints the time per call with device-tensor inputs, synchronised
after each call and pipelined (100 calls back to back, one synchronise: median of 5
rounds), then calls it 300 times under cProfile and prints the median wall time per
call (synchronised), whether the calls replayed, and the top 15 functions by
cumulative time.

With --host (under TRITON_INTERPRET=1, no GPU): the same four models at tiny sizes,
after warm-up calls that run the kernels, with the kernel launches and the graph replay
replaced by no-ops, so that what is timed is nngraph's own per-call work (checks,
binding, input copies, output hand-out, parameter bookkeeping). Both paths are timed:
"replay" (a stand-in capture whose replay does nothing) and "direct" (replay off, the
generated module's run() a no-op). Prints microseconds per call (median of 5 rounds of
2000 calls), wall time and the calling thread's CPU time (the steadier of the two on a
shared machine: time spent waiting for a core is not counted), and, with --profile,
the cProfile top 15 of each.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import nngraph as ng  # noqa: E402


def _sgd(loss, params, lr, inputs):
    grads = ng.grad(loss, params)
    return ng.compile(inputs, loss, {p: p - lr * g for p, g in zip(params, grads)}, target="gpu")


def mlp(small):
    """MLP SGD step: 784-512-256-10 at batch 128 (small: 16-12-8-4 at batch 4)."""
    rng = np.random.default_rng(0)
    sizes, B = ([16, 12, 8, 4], 4) if small else ([784, 512, 256, 10], 128)
    x = ng.placeholder(("N", sizes[0]), name="x")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    params, h = [], x
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        w = ng.parameter((rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32), name=f"W{i}")
        bb = ng.parameter(np.zeros(b, np.float32), name=f"b{i}")
        params += [w, bb]
        h = h @ w + bb
        if i < len(sizes) - 2:
            h = ng.relu(h)
    fn = _sgd(ng.cross_entropy(h, y), params, 0.1, [x, y])
    return fn, [rng.standard_normal((B, sizes[0])).astype(np.float32),
                rng.integers(0, sizes[-1], B).astype(np.int32)]


def cnn(small):
    """LeNet-style CNN SGD step at batch 64 on 28x28 (small: batch 2 on 8x8)."""
    rng = np.random.default_rng(0)
    B, S = (2, 8) if small else (64, 28)
    q = S // 4
    shapes = {"c1": (6, 1, 5, 5), "c2": (16, 6, 5, 5), "f1": (16 * q * q, 120), "f2": (120, 10)}
    P = {k: ng.parameter((rng.standard_normal(s) * 0.1).astype(np.float32), name=k) for k, s in shapes.items()}
    x = ng.placeholder(("N", 1, S, S), name="x")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    h = ng.max_pool2d(ng.relu(ng.conv2d(x, P["c1"], padding=2)), 2)
    h = ng.max_pool2d(ng.relu(ng.conv2d(h, P["c2"], padding=2)), 2)
    h = ng.relu(h.reshape((-1, 16 * q * q)) @ P["f1"]) @ P["f2"]
    fn = _sgd(ng.cross_entropy(h, y), list(P.values()), 0.05, [x, y])
    return fn, [rng.standard_normal((B, 1, S, S)).astype(np.float32), rng.integers(0, 10, B).astype(np.int32)]


def chain(small):
    """Elementwise chain over 4M float32 values (small: 64)."""
    n = 64 if small else 4 * 1024 * 1024
    x = ng.placeholder((n,), name="x")
    fn = ng.compile([x], ng.tanh(x) * ng.sigmoid(x) + 0.5 * x * x - ng.exp(-ng.abs(x)), target="gpu")
    return fn, [np.random.default_rng(0).standard_normal(n).astype(np.float32)]


def softmax_ce(small):
    """Softmax cross-entropy forward + backward on (4096, 1000) (small: (8, 10))."""
    rng = np.random.default_rng(0)
    n, c = (8, 10) if small else (4096, 1000)
    z = ng.placeholder(("N", c), name="z")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    loss = ng.cross_entropy(z, y)
    fn = ng.compile([z, y], [loss, ng.grad(loss, z)], target="gpu")
    return fn, [rng.standard_normal((n, c)).astype(np.float32), rng.integers(0, c, n).astype(np.int32)]


WORKLOADS = (mlp, cnn, chain, softmax_ce)


def top(prof, n=15) -> str:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(n)
    return s.getvalue()


def per_call_us(call, sync, calls, clock=time.perf_counter) -> float:
    """Median over 5 rounds of the mean time of `calls` calls, in microseconds."""
    rounds = []
    for _ in range(5):
        t = clock()
        for _ in range(calls):
            call()
        sync()
        rounds.append((clock() - t) / calls * 1e6)
    return statistics.median(rounds)


def on_device(budget: float):
    import torch
    start = time.perf_counter()
    for w in (chain, softmax_ce, mlp, cnn):       # the quickest to compile first
        if time.perf_counter() - start > budget:
            print(f"=== {w.__name__}: skipped, the time budget ({budget:.0f} s, --budget) is spent "
                  "(compiling is the slow part: run benchmarks/gpu.py first to fill Triton's cache)")
            continue
        fn, host = w(small=False)
        args = [fn.to_device(a) for a in host]
        call = lambda: fn(*args)  # noqa: E731
        for _ in range(10):
            call()
        torch.cuda.synchronize()
        synced = per_call_us(lambda: (call(), torch.cuda.synchronize()), torch.cuda.synchronize, 100)
        pipelined = per_call_us(call, torch.cuda.synchronize, 100)
        print(f"=== {w.__name__}: {synced:.1f} us/call synchronised, {pipelined:.1f} us/call pipelined "
              "(no profiler)", flush=True)
        ts = []
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(300):
            t = time.perf_counter()
            call()
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        prof.disable()
        st = fn.stats()
        print(f"=== {w.__doc__.splitlines()[0]}  median {statistics.median(ts) * 1e6:.0f} us/call "
              f"(synchronised, under cProfile), replayed: {st['replayed']} (replay {st['replay']}), "
              f"launches: {st['kernels']}", flush=True)
        print(top(prof), flush=True)


def stand_in(path: str):
    """Make replay (path 'replay') or direct launches (path 'direct') cost nothing on the
    device side; returns the function that turns the no-op on after warm-up."""
    from runtime import gpu, gpu_replay
    state = {"noop": False}
    if path == "replay":
        gpu.replay_off_reason = lambda *a: None
        gpu_replay.capture_cuda_graph = lambda warmup, launches: (warmup(), lambda: None)[1]
    else:
        gpu.replay_off_reason = lambda *a: "timing the direct path"

    def arm(fn):
        real = fn.runner.module

        class NoLaunch:
            SCHEDULE = real.SCHEDULE

            @staticmethod
            def run(b, sizes):
                return None
        fn.runner.module = NoLaunch
        state["noop"] = True
    return arm


def on_host(profile: bool, calls: int):
    import torch
    print(f"host path only (TRITON_INTERPRET=1, launches replaced by no-ops), torch {torch.__version__}")
    for path in ("replay", "direct"):
        arm = stand_in(path)
        for w in WORKLOADS:
            fn, host = w(small=True)
            args = [fn.to_device(a) for a in host]
            for _ in range(3):      # compiles, runs, captures (stand-in)
                fn(*args)
            arm(fn)
            call = lambda: fn(*args)  # noqa: E731
            us = per_call_us(call, lambda: None, calls)
            cpu = per_call_us(call, lambda: None, calls, time.thread_time)
            print(f"{path:7s} {w.__name__:11s} {us:8.1f} us/call wall, {cpu:8.1f} us/call CPU  "
                  f"replayed={fn.stats()['replayed']}", flush=True)
            if profile:
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(calls):
                    call()
                prof.disable()
                print(top(prof))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", action="store_true", help="time the host path under TRITON_INTERPRET=1")
    ap.add_argument("--profile", action="store_true", help="with --host: print cProfile top 15 too")
    ap.add_argument("--calls", type=int, default=2000, help="with --host: calls per timing round")
    ap.add_argument("--budget", type=float, default=45.0,
                    help="on a device: seconds after which the workloads left are skipped")
    a = ap.parse_args()
    if a.host:
        if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
            sys.exit("--host needs TRITON_INTERPRET=1 in the environment")
        on_host(a.profile, a.calls)
        return
    import torch
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu_overhead.py needs a CUDA device (or --host under TRITON_INTERPRET=1)")
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}", flush=True)
    on_device(a.budget)


if __name__ == "__main__":
    main()
