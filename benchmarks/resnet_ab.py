"""A/B of two nngraph source trees on ResNet-50 inference at batch 1 (onnx_resnet50.py's
seeded model), with onnxruntime in the same run: each engine in its own process, the
three alternating over rounds (the order rotated each round), at each thread count.
Prints every process's median and min wall time per inference, its CPU time per
inference (all its threads: on a loaded machine the wall time counts the time other
processes held the cores, the CPU time does not), for nngraph the sum over its
kernels of each one's fastest time in as many profiled calls (fn.profile: a short
kernel often runs between two preemptions, a whole inference rarely does), and the
load average before it; then per engine the min and the median over its rounds.

    python benchmarks/resnet_ab.py --base DIR [--rounds 5] [--runs 20] [--threads 1 2]

DIR is another checkout of the project (the baseline, e.g. `git worktree add DIR main`
or `git archive main | tar -x -C DIR`); "new" is the tree this script is in. Each
process imports nngraph from its tree. On a shared machine only the comparison inside
one run means anything.
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
from call_timing import time_calls  # noqa: E402  (beside this script)
from machine import cpu_model  # noqa: E402
from onnx_resnet50 import make_model  # noqa: E402


PACKAGES = ("nngraph", "passes", "codegen", "runtime")


def _import_from(tree: str) -> None:
    """Make the project's packages import from `tree`: machine.py (imported above) has
    already imported codegen from the tree this script is in, so a baseline's nngraph
    would otherwise run with this tree's codegen."""
    for name in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        del sys.modules[name]
    sys.path.insert(0, tree)


def child(tree: str, engine: str, model: str, runs: int) -> dict:
    """One engine's timings in this process: nngraph imported from `tree`."""
    from onnx_resnet50 import _input
    name, x = _input(model)
    if engine == "nngraph":
        _import_from(tree)
        import nngraph as ng
        fn = ng.onnx.load(model).compile(target="cpu")
        call = (lambda: fn(x))
    else:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ["NNGRAPH_NUM_THREADS"])
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        call = (lambda: sess.run(None, {name: x}))
    out = np.asarray(call()[0])
    call()
    walls, cpu = time_calls(call, runs)
    res = {"median_ms": 1e3 * float(np.median(walls)), "min_ms": 1e3 * float(np.min(walls)),
           "cpu_ms": 1e3 * cpu, "argmax": int(out.argmax())}
    if engine == "nngraph":     # kernel by kernel, the fastest of `runs` profiled calls, summed
        best = None
        for _ in range(runs):
            secs = np.array([r["seconds"] for r in fn.profile(x, calls=1).rows])
            best = secs if best is None else np.minimum(best, secs)
        res["kernels_ms"] = 1e3 * float(best.sum())
    return res


def run_one(tree: str, engine: str, model: str, runs: int, threads: int) -> dict:
    env = dict(os.environ, NNGRAPH_NUM_THREADS=str(threads), NNGRAPH_BLAS_THREADS=str(threads), PYTHONPATH=tree)
    out = subprocess.run([sys.executable, __file__, "--child", tree, "--engine", engine, "--model", model,
                          "--runs", str(runs)], capture_output=True, text=True, check=True, env=env, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="the baseline source tree")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.engine, args.model, args.runs)))
        return 0
    if not args.base:
        ap.error("--base DIR is required")
    new = os.path.dirname(HERE)
    engines = [("base", os.path.abspath(args.base), "nngraph"), ("new", new, "nngraph"), ("onnxruntime", new, "onnxruntime")]
    print(f"ResNet-50 batch 1 A/B; CPU: {cpu_model()}, {os.cpu_count()} CPUs; base {args.base}, new {new}")
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "resnet50_he.onnx")
        make_model(model)
        for threads in args.threads:
            seen = {name: [] for name, _, _ in engines}
            for r in range(args.rounds):
                for name, tree, engine in engines[r % 3:] + engines[:r % 3]:
                    load = os.getloadavg()[0]
                    res = run_one(tree, engine, model, args.runs, threads)
                    seen[name].append(res)
                    print(f"  {threads} thread(s) round {r} {name:12s} median {res['median_ms']:7.2f} ms  "
                          f"min {res['min_ms']:7.2f} ms  cpu {res['cpu_ms']:7.2f} ms  "
                          f"kernels {res.get('kernels_ms', float('nan')):7.2f} ms  top-1 {res['argmax']}  "
                          f"load {load:.2f}", flush=True)
            for name, results in seen.items():
                print(f"{threads} thread(s) {name:12s}" + "".join(
                    f"  {what} min {min(r[what] for r in results):7.2f} median "
                    f"{float(np.median([r[what] for r in results])):7.2f}" for what in ("median_ms", "min_ms", "cpu_ms", "kernels_ms")
                    if what in results[0])
                    + f"  (ms, over {len(results)} processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
