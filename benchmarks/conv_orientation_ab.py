"""A/B in one process of the one-image convolution product's orientation on ResNet-50
inference at batch 1 (onnx_resnet50.py's seeded model): every layer channel-major
(the product [Og, OH*OW], as before the choice existed) against the orientation
runtime/conv_choice.py measures per layer (pixel-major [OH*OW, Og] where it wins).
Both compiled in this process; calls interleaved, so a busy machine slows both alike.

Prints each one's wall time and the calling thread's CPU time per inference (min and
median), the sum over kernels of each kernel's fastest time in --reps profiled calls
(fn.profile, alternating), the kernels that differ most, and the load average.

    python benchmarks/conv_orientation_ab.py [--calls 20] [--reps 25] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from machine import cpu_model  # noqa: E402
from onnx_resnet50 import temp_model, use_threads  # noqa: E402


def compile_both(path: str) -> dict:
    """{"channel-major": fn, "measured": fn}: the same model compiled twice."""
    import nngraph as ng
    import runtime.conv_choice as conv_choice
    measured = conv_choice.measured_layout
    out = {}
    for name in ("channel-major", "measured"):
        conv_choice.measured_layout = (lambda geo, dtype, products=None: "one_image") \
            if name == "channel-major" else measured
        os.environ["NNGRAPH_AB_ORIENTATION"] = name     # in the compile cache's key
        out[name] = ng.onnx.load(path).compile(target="cpu")
    conv_choice.measured_layout = measured
    return out


def interleaved(fns: dict, x, calls: int) -> dict:
    times = {name: ([], []) for name in fns}
    for i in range(calls):
        for name in (list(fns) if i % 2 == 0 else list(fns)[::-1]):
            c0, t0 = time.thread_time(), time.perf_counter()
            fns[name](x)
            times[name][0].append(time.perf_counter() - t0)
            times[name][1].append(time.thread_time() - c0)
    return times


def kernel_minima(fns: dict, x, reps: int) -> dict:
    best = {name: None for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            secs = np.array([r["seconds"] for r in fn.profile(x, calls=1).rows])
            best[name] = secs if best[name] is None else np.minimum(best[name], secs)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    use_threads(args.threads)
    with temp_model() as (path, x):
        fns = compile_both(path)
    a, b = (np.asarray(fn(x)) for fn in fns.values())
    pixel_major = sum("t_conv" in ln and "ᵀ @" in ln for ln in fns["measured"].dump("kernels").splitlines())
    print(f"ResNet-50 b1, {os.environ.get('NNGRAPH_NUM_THREADS', 'default')} thread(s); CPU: {cpu_model()}; "
          f"{pixel_major} layers pixel-major; outputs differ by {float(np.abs(a - b).max()):.2e}")
    for name, (wall, cpu) in interleaved(fns, x, args.calls).items():
        print(f"  {name:14s} wall min {min(wall) * 1e3:7.2f} median {np.median(wall) * 1e3:7.2f} ms   "
              f"calling thread's CPU min {min(cpu) * 1e3:7.2f} median {np.median(cpu) * 1e3:7.2f} ms")
    best = kernel_minima(fns, x, args.reps)
    for name, secs in best.items():
        print(f"  {name:14s} sum of per-kernel minima {secs.sum() * 1e3:7.2f} ms")
    print_differences([k.name for k in fns["measured"].runner.program.schedule], best)
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


def print_differences(names, best, shown=10) -> None:
    """The kernels whose fastest times differ most between the two (same schedule)."""
    if len(best["measured"]) != len(best["channel-major"]):
        return
    diff = best["measured"] - best["channel-major"]
    for i in sorted(range(len(diff)), key=lambda i: abs(diff[i]), reverse=True)[:shown]:
        print(f"    {names[i]:22s} channel-major {best['channel-major'][i] * 1e6:7.0f} us   "
              f"measured {best['measured'][i] * 1e6:7.0f} us")


if __name__ == "__main__":
    sys.exit(main())
