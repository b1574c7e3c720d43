"""A/B of the worker pool's spin bound (codegen/llvm/thread_pool.py): how long a waiting
worker (or a split waiting for its ranges) spins before it sleeps on its futex. Each
setting in its own process, the settings alternating over rounds (the order reversed
every other round), on the MLP 784-512-256-10 inference and step (batch 128). A setting
is `start` (the measured thread start cost: the pool's default) or nanoseconds. Prints
per round the median wall time per call, the process's CPU time per call (a spinning
worker shows there), fn.profile's time per product, and the load average; then the
medians over rounds. With --interleave, one process instead switches the bound every
--block calls (the bound is read when a wait begins), so every setting meets the same
load: on a machine that other work keeps busy, the fairer comparison. It also prints
the futex wake-up latency measured through the pool (thread_pool.measure_wake_ns).

    python benchmarks/pool_spin_ab.py [--spins start,2000,180000] [--rounds 3] [--runs 300]
    python benchmarks/pool_spin_ab.py --interleave [--spins start,2000] [--runs 2000] [--block 10]
    python benchmarks/pool_spin_ab.py --interleave --spins pool,start/750000/0   # load re-read rule

Session 6 (same host type, load 1.0-1.5, --interleave --runs 3000 --block 10, three runs):
re-reading /proc/loadavg every 23 us (`pool`) against on every turn (`/0`): inference
538/538, 533/532, 526/526 us, step 1448/1445, 1336/1336, 1403/1400 us, with 13 against
180-211 (inference) and 35 against 694-735 (step) reads per call: no slower, far fewer
system calls.

What it showed (session 5, 2-core Xeon VM with AVX-512, MKL sequential, medians in us,
--interleave): the wake-up latency is 1.7-2.2 us (idle 0-1 ms; 6 us after 10 ms, 14 us
after 50 ms), shorter than the thread start (9 us). Under load 6-13 from other work:
inference 1,279 / 1,209 / 3,784 and step 7,117 / 6,999 / 11,140 for 2 us / 9 us / 180 us
(CPU per call 1,099 / 1,105 / 1,605 and 2,466 / 2,488 / 3,888): a long spin holds a core
another runnable thread needs (the worker and the caller were seen runnable on the same
CPU). Run under `chrt -f 10` (a real-time process: the cores as good as free), twice:
inference 656 / 640 and 684 / 675, step 1,740 / 1,721 and 1,697 / 1,668 for 2 us / 9 us;
and inference 734 / 727 / 570, step 1,826 / 1,791 / 1,518 for 2 us / 9 us / 180 us: on free
cores a worker that stays awake between calls keeps its core warm (a 512 KB copy after 100 us
asleep took 32 us against 15 us after spinning as long), which the wake-up latency does
not measure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from call_timing import time_calls  # noqa: E402  (beside this script)
WORKLOADS = (("inference", False), ("step", True))


def _spin_for(setting: str) -> tuple:
    """(spin ns, idle-spin ns, load re-read ns or None) of a setting: `start` (the host's
    thread start cost) or a number of ns, either followed by `/I` (then on to I ns
    while no thread waits for a CPU; default 0: no idle spin) and `/R` (re-reading
    /proc/loadavg every R ns of it, 0: every turn; default the pool's rule,
    thread_pool.loadavg_interval_ns); or `pool` (the pool's own bounds)."""
    from codegen.host import host_facts
    from codegen.llvm import thread_pool
    if setting == "pool":
        return thread_pool.spin_bound_ns(), thread_pool.idle_spin_bound_ns(), None
    spin, idle, reread = (setting.split("/") + ["", ""])[:3]
    return ((int(host_facts().thread_start_ns) if spin == "start" else int(spin)), int(idle or 0),
            int(reread) if reread else None)


def child(setting: str, runs: int) -> dict:
    import workloads
    from codegen.llvm import target, thread_pool
    workloads.load("nngraph")
    target._init()                                   # LLVM and the pool, before any compile
    thread_pool.set_spin_ns(*_spin_for(setting))
    out = {"spin_ns": thread_pool.spin_bound_ns()}
    for name, train in WORKLOADS:
        w = workloads.MLP([784, 512, 256, 10], 128, train=train)
        make, bind = w.nngraph()
        fn = make()
        call = bind(fn)
        for _ in range(10):
            call()
        walls, cpu = time_calls(call, runs)
        rows = fn.profile(calls=runs).rows
        out[name] = {"us": 1e6 * float(np.median(walls)), "cpu_us": 1e6 * cpu,
                     "products_us": [round(1e6 * r["seconds"], 1) for r in rows if "matmul" in r["kernel"]]}
    return out


def interleaved(settings, runs: int, block: int) -> None:
    """Every setting in this process, switched every `block` calls, round robin."""
    import workloads
    from codegen.llvm import target, thread_pool
    workloads.load("nngraph")
    target._init()
    spins = {s: _spin_for(s) for s in settings}
    for name, train in WORKLOADS:
        w = workloads.MLP([784, 512, 256, 10], 128, train=train)
        make, bind = w.nngraph()
        call = bind(make())
        for _ in range(10):
            call()
        walls = {s: [] for s in settings}
        cpu, reads = dict.fromkeys(settings, 0.0), dict.fromkeys(settings, 0)
        for i in range(0, runs, block):
            s = settings[(i // block) % len(settings)]
            thread_pool.set_spin_ns(*spins[s])
            c0, r0 = time.process_time(), thread_pool.loadavg_reads()
            for _ in range(block):
                t0 = time.perf_counter()
                call()
                walls[s].append(time.perf_counter() - t0)
            cpu[s] += time.process_time() - c0
            reads[s] += thread_pool.loadavg_reads() - r0
        for s in settings:
            us = 1e6 * np.array(walls[s])
            print(f"  {name:9s} spin {s:>7s} ({spins[s][0] / 1e3:.1f}/{spins[s][1] / 1e3:.0f} us): median {np.median(us):7.0f} us, "
                  f"p10 {np.percentile(us, 10):7.0f}, CPU {1e6 * cpu[s] / len(us):7.0f} us per call "
                  f"({len(us)} calls), {reads[s] / len(us):.0f} load reads per call", flush=True)
        thread_pool.set_spin_ns(*spins[settings[0]])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spins", default="start,2000,180000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--interleave", action="store_true")
    ap.add_argument("--block", type=int, default=20)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.runs)))
        return 0
    from machine import cpu_model
    settings = args.spins.split(",")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; load average before: {os.getloadavg()}")
    from codegen.llvm import thread_pool
    print(f"futex wake-up latency through the pool: {thread_pool.measure_wake_ns() / 1e3:.1f} us", flush=True)
    if args.interleave:
        interleaved(settings, args.runs, args.block)
        print(f"load average after: {os.getloadavg()}")
        return 0
    results = {s: [] for s in settings}
    for r in range(args.rounds):
        for s in (settings if r % 2 == 0 else settings[::-1]):
            out = subprocess.run([sys.executable, __file__, "--child", s, "--runs", str(args.runs)],
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[s].append(res)
            print(f"round {r} spin {s:>7s} ({res['spin_ns'] / 1e3:.1f} us) load {os.getloadavg()[0]:5.2f}  " +
                  "  ".join(f"{k}: {res[k]['us']:.0f} us (cpu {res[k]['cpu_us']:.0f}; products {res[k]['products_us']})"
                            for k, _ in WORKLOADS), flush=True)
    print("median over rounds (wall us per call, CPU us per call):")
    for s in settings:
        print(f"  spin {s:>7s}: " + "  ".join(
            f"{k} {np.median([x[k]['us'] for x in results[s]]):7.0f} (cpu {np.median([x[k]['cpu_us'] for x in results[s]]):7.0f})"
            for k, _ in WORKLOADS))
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
