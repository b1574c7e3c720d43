"""ResNet-50 at batch 1, layer by layer: each kernel's time in nngraph (fn.profile,
the fastest of --reps profiled calls, kernel by kernel) against the GEMM floor at
that layer's own shape (the BLAS the generated code calls, timed through ctypes on
one thread at exactly the product's m x k x n and transposes; with T threads the
floor is that time / T, a perfect split). Loop kernels (im2col, pooling) are listed
with their bytes and GB/s. The summary splits the time into products (and what
they spend over their floor: epilogues, thread starts, a worse rate), im2col and
other loops.

    python benchmarks/resnet_layers.py [--reps 15] [--threads N] [--rows 25]

The model is onnx_resnet50.py's (the wheel's light ResNet-50 with seeded weights).
A busy machine inflates single kernels: the minimum over reps is shown, and only
shares and ratios inside one run should be compared.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from floors import best_seconds  # noqa: E402  (beside this script)
from machine import cpu_model  # noqa: E402
from onnx_resnet50 import _input, make_model  # noqa: E402


def kernel_minima(fn, x, reps: int):
    """Per kernel, the fastest of `reps` profiled calls (seconds), and the table rows."""
    best, rows = None, None
    for _ in range(reps):
        table = fn.profile(x, calls=1)
        secs = np.array([r["seconds"] for r in table.rows])
        best = secs if best is None else np.minimum(best, secs)
        rows = table.rows
    return best, rows


def gemm_floor(kern, threads: int) -> tuple:
    """(m, k, n, seconds): the product's shape and its BLAS time on one thread / threads."""
    from codegen.llvm import blas
    from codegen.llvm.blas_call import gemm_function, row_major_gemm, threads_function
    m, n, k = (int(np.prod(kern.axes(d))) for d in "mnk")
    addresses = blas.gemm_addresses()
    threads_function(addresses)(1)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if kern.trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if kern.trans_b else (k, n)).astype(np.float32)
    c = np.zeros((m, n), np.float32)
    call = row_major_gemm(gemm_function(addresses, "float32"), a, b, c, kern.trans_a, kern.trans_b)
    return m, k, n, best_seconds(call, 10) / threads


def layer_rows(fn, x, reps: int, threads: int) -> list:
    from passes.program import MatmulKernel
    best, rows = kernel_minima(fn, x, reps)
    out = []
    for pos, kern in enumerate(fn.runner.program.schedule):
        r = {"kernel": kern.name, "seconds": float(best[pos]), "bytes": rows[pos]["bytes"]}
        if isinstance(kern, MatmulKernel):
            r["m"], r["k"], r["n"], r["floor"] = gemm_floor(kern, threads)
            r["kind"] = "product"
        else:
            r["kind"] = "im2col" if kern.name.endswith("conv2d") else "loop"
        out.append(r)
    return out


def summary(rows) -> str:
    products = [r for r in rows if r["kind"] == "product"]
    total = sum(r["seconds"] for r in rows)
    ours, floor = sum(r["seconds"] for r in products), sum(r["floor"] for r in products)
    im2col = sum(r["seconds"] for r in rows if r["kind"] == "im2col")
    loops = sum(r["seconds"] for r in rows if r["kind"] == "loop")
    ms = 1e3
    return (f"kernels {total * ms:.2f} ms = products {ours * ms:.2f} ms (GEMM floor {floor * ms:.2f} ms, over it "
            f"{(ours - floor) * ms:.2f} ms) + im2col {im2col * ms:.2f} ms + other loops {loops * ms:.2f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rows", type=int, default=25, help="slowest kernels listed (0: all)")
    args = ap.parse_args()
    if args.threads:
        os.environ.update(NNGRAPH_NUM_THREADS=str(args.threads), NNGRAPH_BLAS_THREADS=str(args.threads))
    import nngraph as ng
    from codegen.llvm.entry import N_THREADS
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "resnet50_he.onnx")
        make_model(path)
        _, x = _input(path)
        fn = ng.onnx.load(path).compile(target="cpu")
    fn(x)
    rows = layer_rows(fn, x, args.reps, N_THREADS)
    print(f"ResNet-50 batch 1 per layer, {N_THREADS} thread(s), fastest of {args.reps} profiled calls; "
          f"CPU: {cpu_model()}; BLAS: {fn.stats().get('blas', '?')}")
    print(summary(rows))
    shown = sorted(rows, key=lambda r: -r["seconds"])[:args.rows or None]
    print(f"{'kernel':24s} {'kind':8s} {'m x k x n':>18s} {'us':>8s} {'floor us':>9s} {'ratio':>6s} {'GB/s':>6s}")
    for r in shown:
        shape = f"{r['m']}x{r['k']}x{r['n']}" if r["kind"] == "product" else ""
        floor = f"{r['floor'] * 1e6:9.0f} {r['seconds'] / r['floor']:6.2f}" if r["kind"] == "product" else " " * 16
        print(f"{r['kernel']:24s} {r['kind']:8s} {shape:>18s} {r['seconds'] * 1e6:8.0f} {floor} "
              f"{r['bytes'] / max(r['seconds'], 1e-12) / 1e9:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
