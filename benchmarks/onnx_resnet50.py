"""ResNet-50 inference, batch 1, 224x224: nngraph (target cpu) against onnxruntime's
CPU provider, each in its own process, on the same model file and input.

The model is the onnx wheel's light ResNet-50 (onnx/backend/test/data/light) with
its ConstantOfShape weights replaced by seeded initializers (conv and dense weights
He-normal, batch-norm statistics and affine terms near their identity), so that no
constant folding can shortcut the work. No download.

    python benchmarks/onnx_resnet50.py [--runs 20] [--threads N]

--threads N gives both engines N threads (onnxruntime's intra-op pool; nngraph's
NNGRAPH_NUM_THREADS and NNGRAPH_BLAS_THREADS); by default each uses its own default,
except where this process may run on fewer CPUs than the machine has (taskset, a
container's cpuset): then both get one thread per allowed CPU, since onnxruntime's
default pool is one thread per physical core, pinned, whatever the affinity (seen on a
16-core host under `taskset -c 0,1`: 12.8 ms, a figure no two cores give).
--isa avx2 holds both to AVX2 code paths where they can be (benchmarks/isa.py:
onnxruntime cannot, and is marked so).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from isa import ISAS, framework_env, print_header, probe_all  # benchmarks/isa.py, beside this script
from machine import cpu_model  # benchmarks/machine.py, beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINES = ("onnxruntime", "nngraph")


def make_model(path: str, seed: int = 0) -> None:
    import onnx
    import onnx.backend.test
    from onnx import numpy_helper
    src = os.path.join(os.path.dirname(onnx.backend.test.__file__), "data", "light", "light_resnet50.onnx")
    model = onnx.load(src)
    rng = np.random.default_rng(seed)
    shapes = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    keep, inits = [], []
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape":
            keep.append(node)
            continue
        name, shape = node.output[0], tuple(int(s) for s in shapes[node.input[0]])
        inits.append(numpy_helper.from_array(_init(name, shape, rng), name))
    used = {i for n in keep for i in n.input}
    del model.graph.node[:]
    model.graph.node.extend(keep)
    old = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(old + inits)
    from onnx import TensorProto, helper
    kept_inputs = [i for i in model.graph.input if i.name in used and i.name not in {t.name for t in inits}]
    del model.graph.input[:]
    model.graph.input.extend(kept_inputs)  # (IR version 3: initializers are listed as inputs too)
    model.graph.input.extend(helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _init(name: str, shape: tuple, rng) -> np.ndarray:
    if name.endswith("_w_0"):  # conv / dense weights: He-normal over the fan-in
        fan_in = int(np.prod(shape[1:]))
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name.endswith("_riv_0"):  # running variance
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if name.endswith("_s_0"):
        return (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    return (0.05 * rng.standard_normal(shape)).astype(np.float32)


def _input(model_path: str) -> tuple:
    import onnx
    m = onnx.load(model_path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    vi = next(i for i in m.graph.input if i.name not in inits)
    shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    return vi.name, np.random.default_rng(1).standard_normal(shape).astype(np.float32)


def thread_settings(threads) -> dict:
    """nngraph's variables for `threads` threads (NNGRAPH_NUM_THREADS, NNGRAPH_BLAS_THREADS); {} when unset."""
    return {"NNGRAPH_NUM_THREADS": str(threads), "NNGRAPH_BLAS_THREADS": str(threads)} if threads else {}


def default_threads():
    """None (each engine's own default), or the allowed CPU count where it is below the
    machine's (see the module docstring)."""
    allowed = len(os.sched_getaffinity(0))
    return allowed if allowed < (os.cpu_count() or allowed) else None


def use_threads(threads) -> None:
    """Give nngraph `threads` threads in this process when set."""
    os.environ.update(thread_settings(threads))


def engine_env(engine: str, isa: str, threads=None, base=None) -> dict:
    """The environment of `engine`'s process: `threads` for nngraph (use_threads' variables;
    onnxruntime reads NNGRAPH_NUM_THREADS too, run_engine), its settings under `isa`."""
    return framework_env(engine, isa, dict(os.environ if base is None else base, **thread_settings(threads)))


@contextlib.contextmanager
def temp_model():
    """(path, input array) of the seeded model (make_model) in a temporary directory."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "resnet50_he.onnx")
        make_model(path)
        yield path, _input(path)[1]


def _time(call, runs: int) -> list:
    call()
    call()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def run_engine(engine: str, model_path: str, runs: int) -> dict:
    name, x = _input(model_path)
    t0 = time.perf_counter()
    if engine == "nngraph":
        sys.path.insert(0, os.path.dirname(HERE))
        import nngraph as ng
        fn = ng.onnx.load(model_path).compile(target="cpu")
        call = (lambda: fn(x))
    else:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if os.environ.get("NNGRAPH_NUM_THREADS"):
            opts.intra_op_num_threads = int(os.environ["NNGRAPH_NUM_THREADS"])
        sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        call = (lambda: sess.run(None, {name: x}))
    setup = time.perf_counter() - t0
    out = np.asarray(call()[0])
    times = _time(call, runs)
    return {"engine": engine, "setup_s": setup, "median_ms": 1e3 * float(np.median(times)),
            "min_ms": 1e3 * float(np.min(times)), "checksum": float(out.astype(np.float64).sum()),
            "argmax": int(out.argmax())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--isa", choices=ISAS, default="native",
                    help="avx2: both engines held to AVX2 code paths where they can be (an emulation)")
    ap.add_argument("--engine", choices=("nngraph", "onnxruntime"), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        print(json.dumps(run_engine(args.engine, args.model, args.runs)))
        return 0
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "resnet50_he.onnx")
        make_model(path)
        results = []
        checks = probe_all(args.isa, ENGINES, dict(os.environ, **thread_settings(args.threads)))   # the workers' threads
        for engine in ENGINES:
            out = subprocess.run([sys.executable, __file__, "--engine", engine, "--model", path,
                                  "--runs", str(args.runs)], capture_output=True, text=True, check=True,
                                 env=engine_env(engine, args.isa, args.threads))
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    threads = f"{args.threads} thread(s) each" if args.threads else "default threads"
    print(f"ResNet-50, batch 1, 224x224, {args.runs} timed runs, {threads}; CPU: {cpu_model()}, "
          f"{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs allowed")
    print_header(cpu_model(), checks)
    for r in results:
        print(f"  {r['engine']:12s} median {r['median_ms']:8.2f} ms   min {r['min_ms']:8.2f} ms   "
              f"setup {r['setup_s']:6.2f} s   top-1 {r['argmax']}   sum {r['checksum']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
