"""LSTM training step: nngraph's scan (one loop in the compiled program) against the
same cell unrolled by hand, and against PyTorch's nn.LSTM (eager, CPU), each
framework in its own process.

One SGD step of LSTM(F -> H) over T steps of a batch of N sequences, then Dense(10)
and cross-entropy on the last hidden state: forward, backpropagation through time,
update. The nngraph LSTM is a hand-written cell (ng ops: one product with the
input and one with the recurrent weights, gates i, f, g, o as PyTorch) inside
ng.scan. Prints, per variant, the cold compile time (fresh on-disk cache), the
kernels per call, and the median step time.

    python benchmarks/lstm.py                     # T=20, N=32, F=H=256
    python benchmarks/lstm.py --T 50 --N 32 --no-unrolled
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def _data(a):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((a.T, a.N, a.F)).astype(np.float32)
    Y = rng.integers(0, 10, a.N).astype(np.int32)
    return X, Y


def _weights(a):
    rng = np.random.default_rng(1)
    s = 1 / np.sqrt(a.H)
    return {"Wx": rng.uniform(-s, s, (a.F, 4 * a.H)).astype(np.float32),
            "Wh": rng.uniform(-s, s, (a.H, 4 * a.H)).astype(np.float32),
            "b": rng.uniform(-s, s, 4 * a.H).astype(np.float32),
            "V": rng.uniform(-s, s, (a.H, 10)).astype(np.float32),
            "c": np.zeros(10, np.float32)}


def _cell(ng, carry, x_t, p, H):
    h, c = carry
    z = x_t @ p["Wx"] + h @ p["Wh"] + p["b"]
    i, f = ng.sigmoid(z[:, :H]), ng.sigmoid(z[:, H:2 * H])
    g, o = ng.tanh(z[:, 2 * H:3 * H]), ng.sigmoid(z[:, 3 * H:])
    c2 = f * c + i * g
    return (o * ng.tanh(c2), c2)


def _nngraph_step(a, unrolled: bool):
    import nngraph as ng
    p = {k: ng.parameter(v, name=k) for k, v in _weights(a).items()}
    T = a.T if unrolled else "T"
    xs = ng.placeholder((T, "N", a.F), name="xs")
    y = ng.placeholder(("N",), "int32", name="y")
    zeros = ng.broadcast_to(ng.constant(np.zeros((1, a.H), np.float32)), (xs.shape[1], a.H))
    if unrolled:
        carry = (zeros, zeros)
        for t in range(a.T):
            carry = _cell(ng, carry, xs[t], p, a.H)
        hT = carry[0]
    else:
        (hT, _), _ = ng.scan(lambda carry, x_t: (_cell(ng, carry, x_t, p, a.H), None), (zeros, zeros), xs)
    loss = ng.cross_entropy(hT @ p["V"] + p["c"], y)
    grads = ng.grad(loss, list(p.values()))
    t0 = time.perf_counter()
    fn = ng.compile([xs, y], loss, updates={w: w - 0.01 * g for w, g in zip(p.values(), grads)}, target="cpu")
    return fn, time.perf_counter() - t0


def run_nngraph(a, unrolled: bool) -> dict:
    fn, compile_s = _nngraph_step(a, unrolled)
    X, Y = _data(a)
    times = []
    for _ in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        fn(X, Y)
        times.append(time.perf_counter() - t0)
    st = fn.stats()
    loops = st.get("loops", [])
    return {"variant": "nngraph unrolled" if unrolled else "nngraph scan", "compile_s": compile_s,
            "kernels": st["kernels"], "step_ms": 1e3 * statistics.median(times[a.warmup:]),
            "per_step_kernels": [lp["kernels_per_step"] for lp in loops]}


def run_torch(a) -> dict:
    import torch
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(a.F, a.H)
    head = torch.nn.Linear(a.H, 10)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    X, Y = _data(a)
    X, Y = torch.from_numpy(X), torch.from_numpy(Y.astype(np.int64))
    times = []
    for _ in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        out, (h, c) = lstm(X)
        loss = torch.nn.functional.cross_entropy(head(h[0]), Y)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"variant": f"torch {torch.__version__} nn.LSTM (eager, {torch.get_num_threads()} threads)",
            "compile_s": 0.0, "kernels": None, "step_ms": 1e3 * statistics.median(times[a.warmup:]),
            "per_step_kernels": []}


def _in_process_of_its_own(a, which: str) -> dict:
    """Run one variant in a fresh Python (its own process; a fresh compile cache)."""
    env = dict(os.environ)
    env["NNGRAPH_CACHE_DIR"] = tempfile.mkdtemp(prefix="nngraph-lstm-bench-")
    args = [sys.executable, __file__, "--only", which, "--T", str(a.T), "--N", str(a.N), "--F", str(a.F),
            "--H", str(a.H), "--steps", str(a.steps), "--warmup", str(a.warmup)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=20)
    ap.add_argument("--N", type=int, default=32)
    ap.add_argument("--F", type=int, default=256)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-unrolled", action="store_true", help="skip the hand-unrolled variant")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--only", choices=["scan", "unrolled", "torch"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.only:
        res = run_torch(a) if a.only == "torch" else run_nngraph(a, a.only == "unrolled")
        print(json.dumps(res))
        return
    from machine import cpu_model
    print(f"LSTM({a.F}->{a.H}) training step, T={a.T}, batch {a.N}, Dense(10) + cross-entropy, SGD; "
          f"{cpu_model()}, {os.cpu_count()} CPUs")
    which = ["scan"] + ([] if a.no_unrolled else ["unrolled"]) + ([] if a.no_torch else ["torch"])
    for w in which:
        r = _in_process_of_its_own(a, w)
        kern = f"{r['kernels']} kernels" if r["kernels"] is not None else ""
        per = f" ({'+'.join(map(str, r['per_step_kernels']))} per step in its loops)" if r["per_step_kernels"] else ""
        print(f"  {r['variant']:<48} compile {r['compile_s']:6.2f} s  step {r['step_ms']:8.2f} ms  {kern}{per}")


if __name__ == "__main__":
    main()
