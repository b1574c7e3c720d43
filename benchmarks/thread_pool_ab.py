"""A/B of the worker pool (codegen/llvm/thread_pool.py) against a thread started per
range (NNGRAPH_THREAD_POOL=0): each setting in its own process, the two alternating
over rounds (the order flipped each round), on the MLP 784-512-256-10 step and
inference (batch 128) and ResNet-50 inference (batch 1, benchmarks/onnx_resnet50.py's
seeded model). Prints per round the median wall time per call and the process's CPU
time per call (all its threads: a spinning worker shows here), and the load average.

    python benchmarks/thread_pool_ab.py [--rounds 3] [--runs 200] [--resnet-runs 20]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from call_timing import time_calls  # noqa: E402  (beside this script)


def _time(call, runs: int) -> dict:
    for _ in range(3):
        call()
    walls, cpu = time_calls(call, runs)
    return {"ms": 1e3 * float(np.median(walls)), "cpu_ms": 1e3 * cpu}


def child(model_path: str, runs: int, resnet_runs: int) -> dict:
    import workloads
    import nngraph as ng
    workloads.load("nngraph")
    out = {}
    for train in (True, False):
        w = workloads.MLP([784, 512, 256, 10], 128, train=train)
        make, bind = w.nngraph()
        out["MLP step b128" if train else "MLP inference b128"] = _time(bind(make()), runs)
    from onnx_resnet50 import _input
    name, x = _input(model_path)
    fn = ng.onnx.load(model_path).compile(target="cpu")
    out["ResNet-50 b1"] = _time(lambda: fn(x), resnet_runs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--resnet-runs", type=int, default=20)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.runs, args.resnet_runs)))
        return 0
    from machine import cpu_model
    from onnx_resnet50 import make_model
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; load average before: {os.getloadavg()}")
    results = {"1": [], "0": []}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "resnet50_he.onnx")
        make_model(path)
        for r in range(args.rounds):
            for setting in (("1", "0") if r % 2 == 0 else ("0", "1")):
                env = dict(os.environ, NNGRAPH_THREAD_POOL=setting)
                out = subprocess.run([sys.executable, __file__, "--child", path, "--runs", str(args.runs),
                                      "--resnet-runs", str(args.resnet_runs)], env=env,
                                     capture_output=True, text=True)
                if out.returncode:
                    sys.exit(out.stderr)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                results[setting].append(res)
                label = "pool" if setting == "1" else "plain"
                print(f"round {r} {label:5s} load {os.getloadavg()[0]:5.2f}  " + "  ".join(
                    f"{k}: {v['ms']:.3f} ms (cpu {v['cpu_ms']:.3f})" for k, v in res.items()), flush=True)
    print("median over rounds (wall ms per call, CPU ms per call):")
    for k in results["1"][0]:
        on = [r[k] for r in results["1"]]
        off = [r[k] for r in results["0"]]
        print(f"  {k:20s} pool {np.median([v['ms'] for v in on]):8.3f} (cpu {np.median([v['cpu_ms'] for v in on]):8.3f})"
              f"   plain {np.median([v['ms'] for v in off]):8.3f} (cpu {np.median([v['cpu_ms'] for v in off]):8.3f})")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
