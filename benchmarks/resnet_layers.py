"""ResNet-50 at batch 1, layer by layer: each kernel's time in nngraph (fn.profile,
the fastest of --reps profiled calls, kernel by kernel) against the GEMM floor at
that layer's own shape (the BLAS the generated code calls, timed through ctypes on
one thread at exactly the product's m x k x n and transposes; with T threads the
floor is that time / T, a perfect split), and with --ort against onnxruntime's time
for the same node (its profiler, SessionOptions.enable_profiling: the fastest of
--reps runs per node, in a process of its own with the same thread count).

A layer is a product with the im2col kernel right before it, if any (listed with
its own time); the other loop kernels (pooling, the softmax) are layers of their
own, matched to onnxruntime's MaxPool, AveragePool/GlobalAveragePool and Softmax.
Convolutions match onnxruntime's Conv nodes by shape (output channels, window
length C*KH*KW, output points; our product channel-major, m x k x n = Og x K x P,
or pixel-major, P x K x Og: runtime/conv_choice.py), in order; onnxruntime's fused Conv carries its bias,
residual add and relu as our epilogues do. onnxruntime's layout changes
(ReorderInput/ReorderOutput of its NCHWc convolutions) and other unmatched nodes
are summed on a line of their own. The summary splits our time into products (and
what they spend over their floor: epilogues, thread starts, a worse rate), im2col
and other loops. With --kinds, both engines' times are summed per kind of layer
(1x1 stride 1, 1x1 stride 2 downsample, 3x3 stride 1, 3x3 stride 2, the stem,
pools, the FC layer; ours also im2col's and the direct convolution's input copies),
the kind of a product found from the model's Conv nodes by shape (kinds).

    python benchmarks/resnet_layers.py [--reps 15] [--threads N] [--rows 25] [--ort] [--kinds]

The model is onnx_resnet50.py's (the wheel's light ResNet-50 with seeded weights).
A busy machine inflates single kernels: the minimum over reps is shown, and only
shares and ratios inside one run should be compared.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from floors import best_seconds  # noqa: E402  (beside this script)
from machine import cpu_model  # noqa: E402
from onnx_resnet50 import temp_model, use_threads  # noqa: E402


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
        r = {"kernel": kern.name, "seconds": float(best[pos]), "bytes": rows[pos]["bytes"],
             "source": getattr(kern, "source", "")}
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


def layers(rows) -> list:
    """The kernel rows grouped into layers: a product with the im2col right before it
    (its seconds under "im2col"), or a loop kernel of its own."""
    out, pending = [], None
    for r in rows:
        if r["kind"] == "im2col":
            pending = r
            continue
        layer = dict(r, im2col=pending["seconds"] if pending and r["kind"] == "product" else 0.0)
        layer["total"] = layer["seconds"] + layer["im2col"]
        out.append(layer)
        pending = None
    return out


LOOP_OPS = {"max_pool2d": ("MaxPool",), "avg_pool2d": ("AveragePool", "GlobalAveragePool"), "exp": ("Softmax",)}


def ort_nodes(model: str, reps: int, threads: int) -> list:
    """onnxruntime's nodes in execution order: {op, key, us} (fastest of reps runs);
    key: (out channels, C*KH*KW, output points) of a Conv, (m, k, n) of a Gemm."""
    import onnxruntime as ort
    from onnx_resnet50 import _input
    name, x = _input(model)
    with tempfile.TemporaryDirectory() as d:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(d, "ort")
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        for _ in range(reps + 2):
            sess.run(None, {name: x})
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    nodes, best = [], {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        if e["name"] not in best:
            nodes.append(e)
        best[e["name"]] = min(best.get(e["name"], e["dur"]), e["dur"])
    return [{"op": e["args"]["op_name"], "key": _ort_key(e["args"]), "us": best[e["name"]]} for e in nodes]


def _ort_key(args):
    shapes = [list(s.values())[0] for s in args.get("input_type_shape", [])]
    out = [list(s.values())[0] for s in args.get("output_type_shape", [])]
    if args["op_name"] == "Conv" and len(shapes) >= 2 and out:
        w, y = shapes[1], out[0]
        return (w[0], int(np.prod(w[1:])), int(np.prod(y[2:])))
    if args["op_name"] in ("Gemm", "MatMul") and len(shapes) >= 2 and out:
        return (out[0][0], shapes[0][-1], out[0][-1])
    return None


def match_ort(table, nodes) -> float:
    """Set each layer's "ort" (seconds) from onnxruntime's node of the same shape (a
    product) or op (a loop), in order; the seconds of the nodes left unmatched."""
    left = list(nodes)
    for layer in table:
        if layer["kind"] == "product":
            shapes = {(layer["m"], layer["k"], layer["n"]), (layer["n"], layer["k"], layer["m"])}  # either orientation
            want = lambda n: tuple(n["key"] or ()) in shapes  # noqa: E731
        else:
            ops = next((v for k, v in LOOP_OPS.items() if k in layer["kernel"]), ())
            want = lambda n: n["op"] in ops  # noqa: E731
        hit = next((n for n in left if want(n)), None)
        if hit is not None:
            layer["ort"] = hit["us"] * 1e-6
            left.remove(hit)
    return sum(n["us"] for n in left) * 1e-6


def kinds(model: str) -> tuple:
    """({node name: kind}, {(out channels, C*KH*KW, output points): [kind, ...] in
    graph order}) of the model's Conv nodes, the kind "KHxKW sS" ("stem" for the
    first), the shapes from ONNX's shape inference (a shape alone is ambiguous:
    ResNet-50's 3x3 layers at 28x28 of stride 2 and 1 share one)."""
    import onnx
    from onnx import numpy_helper
    m = onnx.shape_inference.infer_shapes(onnx.load(model))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)}
    shapes.update({i.name: list(numpy_helper.to_array(i).shape) for i in m.graph.initializer})
    by_name, by_key = {}, {}
    for node in m.graph.node:
        if node.op_type != "Conv":
            continue
        w, y = shapes[node.input[1]], shapes[node.output[0]]
        attrs = {a.name: list(a.ints) for a in node.attribute}
        kind = "stem" if not by_name else f"{w[2]}x{w[3]} s{max(attrs.get('strides', [1]))}"
        by_name[node.name] = kind
        by_key.setdefault((w[0], int(np.prod(w[1:])), int(np.prod(y[2:]))), []).append(kind)
    return by_name, by_key


LOOP_KINDS = (("max_pool", "pools"), ("avg_pool", "pools"), ("exp", "softmax"))


def kind_of_layer(layer, by_name) -> str:
    """A layer's kind: its Conv node's (named in the kernel's source), "FC" for a
    matmul, else its loop's."""
    if layer["kind"] == "product":
        if "matmul" in layer["kernel"]:
            return "FC"
        name = re.search(r"@(\S+)", layer.get("source", ""))
        return by_name.get(name.group(1) if name else None, "other product")
    return next((kind for name, kind in LOOP_KINDS if name in layer["kernel"]), "other loops")


def ort_kind(node, by_key) -> str:
    """An onnxruntime node's kind: a Conv's by its shape, the next of that shape in
    graph order (by_key is consumed), else by its op."""
    if node["op"] == "Conv":
        left = by_key.get(tuple(node["key"] or ()))
        return left.pop(0) if left else "other product"
    return {"Gemm": "FC", "MatMul": "FC", "MaxPool": "pools", "AveragePool": "pools",
            "GlobalAveragePool": "pools", "Softmax": "softmax"}.get(node["op"], "other nodes")


def print_kinds(table, nodes, conv_kinds) -> None:
    """Per kind of layer: our products and loops, our input copies, onnxruntime's nodes (us)."""
    ours, copies, ort, count = {}, {}, {}, {}
    for layer in table:
        kind = kind_of_layer(layer, conv_kinds[0])
        ours[kind] = ours.get(kind, 0.0) + layer["seconds"]
        copies[kind] = copies.get(kind, 0.0) + layer["im2col"]
        count[kind] = count.get(kind, 0) + 1
    by_key = {k: list(v) for k, v in conv_kinds[1].items()}
    for node in nodes or ():
        kind = ort_kind(node, by_key)
        ort[kind] = ort.get(kind, 0.0) + node["us"] * 1e-6
    print(f"{'kind':14s} {'layers':>6s} {'ours':>7s} {'+copies':>8s} {'= total':>8s}" +
          (f" {'ort':>7s} {'ours-ort':>8s} {'/ort':>5s}" if nodes is not None else "") + "   (us)")
    for kind in sorted(set(ours) | set(ort), key=lambda k: -(ours.get(k, 0) + copies.get(k, 0))):
        total = ours.get(kind, 0.0) + copies.get(kind, 0.0)
        line = (f"{kind:14s} {count.get(kind, 0):6d} {ours.get(kind, 0) * 1e6:7.0f} {copies.get(kind, 0) * 1e6:8.0f} "
                f"{total * 1e6:8.0f}")
        if nodes is not None:
            o = ort.get(kind, 0.0)
            line += f" {o * 1e6:7.0f} {(total - o) * 1e6:8.0f} " + (f"{total / o:5.2f}" if o else "    -")
        print(line)
    total, o = sum(ours.values()) + sum(copies.values()), sum(ort.values())
    print(f"{'all':14s} {sum(count.values()):6d} {sum(ours.values()) * 1e6:7.0f} {sum(copies.values()) * 1e6:8.0f} "
          f"{total * 1e6:8.0f}" + (f" {o * 1e6:7.0f} {(total - o) * 1e6:8.0f} {total / o:5.2f}" if nodes else ""))


def print_layers(table, shown: int, ort_rest) -> None:
    total = sum(r["total"] for r in table)
    ort = ort_rest is not None
    print(f"{'layer':24s} {'m x k x n':>16s} {'im2col':>7s} {'product':>8s} {'total':>7s} {'share':>6s} "
          f"{'floor':>6s} {'/floor':>6s}" + (f" {'ort':>6s} {'/ort':>5s}" if ort else "") + "   (us)")
    for r in sorted(table, key=lambda r: -r["total"])[:shown or None]:
        product = r["kind"] == "product"
        line = (f"{r['kernel']:24s} {(f'{r[chr(109)]}x{r[chr(107)]}x{r[chr(110)]}' if product else ''):>16s} "
                f"{r['im2col'] * 1e6:7.0f} {r['seconds'] * 1e6:8.0f} {r['total'] * 1e6:7.0f} "
                f"{100 * r['total'] / total:5.1f}% ")
        line += f"{r['floor'] * 1e6:6.0f} {r['total'] / r['floor']:6.2f}" if product else " " * 13
        if ort:
            line += f" {r['ort'] * 1e6:6.0f} {r['total'] / r['ort']:5.2f}" if "ort" in r else " " * 13
        print(line)
    if ort:
        matched = sum(r.get("ort", 0.0) for r in table)
        print(f"onnxruntime: matched nodes {matched * 1e3:.2f} ms + other nodes (layout reorders...) "
              f"{ort_rest * 1e3:.2f} ms = {(matched + ort_rest) * 1e3:.2f} ms; nngraph kernels {total * 1e3:.2f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rows", type=int, default=25, help="slowest layers listed (0: all)")
    ap.add_argument("--ort", action="store_true", help="onnxruntime's time per node beside ours")
    ap.add_argument("--kinds", action="store_true", help="times summed per kind of layer (with --ort: both engines')")
    ap.add_argument("--ort-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ort_child:
        print(json.dumps(ort_nodes(args.ort_child, args.reps, args.threads or 0)))
        return 0
    use_threads(args.threads)
    import nngraph as ng
    from codegen.llvm.entry import N_THREADS
    with temp_model() as (path, x):
        nodes = None
        if args.ort:      # first, in a process of its own: its spinning pool must not share ours
            out = subprocess.run([sys.executable, __file__, "--ort-child", path, "--reps", str(args.reps),
                                  "--threads", str(N_THREADS)], capture_output=True, text=True, check=True)
            nodes = json.loads(out.stdout.strip().splitlines()[-1])
        fn = ng.onnx.load(path).compile(target="cpu")
        conv_kinds = kinds(path)
    fn(x)
    rows = layer_rows(fn, x, args.reps, N_THREADS)
    print(f"ResNet-50 batch 1 per layer, {N_THREADS} thread(s), fastest of {args.reps} profiled calls; "
          f"CPU: {cpu_model()}; BLAS: {fn.stats().get('blas', '?')}; load average {os.getloadavg()[0]:.2f}")
    print(summary(rows))
    table = layers(rows)
    if args.kinds:
        print_kinds(table, nodes, conv_kinds)
    print_layers(table, args.rows, match_ort(table, nodes) if nodes is not None else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
