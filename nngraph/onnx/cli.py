"""`python -m nngraph run MODEL.onnx`: import and compile an ONNX model, write the IR
after every pass to a dumps directory, and time one inference on random input of
the declared shape (dynamic sizes take --dim NAME=SIZE, default 1)."""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from ..types import Dim, np_dtype

HELP = "compile an ONNX model, print the dumps directory, compile time and one inference time"
DESCRIPTION = """\
Import MODEL.onnx (ng.onnx.load), compile it for --target (default cpu) with the IR
after every pass written to --dump-dir (default nngraph-dumps/MODEL), run it once
to warm up and then once more on random input of the declared shape, and print
the dumps directory, the compile time and the inference time. Dynamic sizes
(symbolic dims) are 1 unless given with --dim NAME=SIZE (e.g. --dim N=8).

Example:
    python -m nngraph run resnet50.onnx --dim N=1
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX model")
    p.add_argument("--target", choices=("cpu", "gpu", "reference"), default="cpu")
    p.add_argument("--dump-dir", default=None, help="where to write the IR after every pass")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE",
                   help="the size of a dynamic dimension (repeatable; default 1)")
    p.add_argument("--seed", type=int, default=0)


def _random_inputs(inputs, dims: dict, seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for ph in inputs:
        shape = tuple(dims.get(s.name, 1) if isinstance(s, Dim) else s for s in ph.shape)
        dt = np_dtype(ph.dtype)
        if dt.kind == "f":
            out.append(rng.standard_normal(shape).astype(dt))
        elif dt.kind == "b":
            out.append(rng.random(shape) < 0.5)
        else:
            out.append(rng.integers(0, 2, shape).astype(dt))
    return out


def run(args) -> int:
    from ..errors import NNGraphError
    from . import load
    try:
        dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    except ValueError:
        print(f"nngraph run: error: --dim takes NAME=SIZE, got {args.dim}", file=sys.stderr)
        return 2
    dump_dir = args.dump_dir or os.path.join("nngraph-dumps", os.path.splitext(os.path.basename(args.model))[0])
    try:
        t0 = time.perf_counter()
        imported = load(args.model)
        t1 = time.perf_counter()
        fn = imported.compile(target=args.target, dump_dir=dump_dir)
        t2 = time.perf_counter()
        xs = _random_inputs(imported.inputs, dims, args.seed)
        fn(*xs)  # warm-up: first-call costs (thread start, page faults) are not the model's
        t3 = time.perf_counter()
        outs = fn(*xs)
        t4 = time.perf_counter()
    except (NNGraphError, FileNotFoundError) as e:
        print(f"nngraph run: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    shapes = ", ".join(f"{ph.name}: {list(x.shape)}" for ph, x in zip(imported.inputs, xs))
    print(f"model:      {args.model} (opset {imported.opset}, {len(imported.params)} parameters)")
    print(f"dumps:      {os.path.abspath(dump_dir)}")
    print(f"import:     {t1 - t0:.3f} s")
    print(f"compile:    {t2 - t1:.3f} s (target {args.target})")
    print(f"inference:  {(t4 - t3) * 1e3:.3f} ms on random input {shapes}")
    print("outputs:    " + ", ".join(f"{n}: {list(o.shape)}" for n, o in zip(imported.output_names, outs)))
    return 0
