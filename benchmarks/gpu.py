"""target="gpu" against PyTorch eager and torch.compile on the same machine.

    python benchmarks/gpu.py            (needs a CUDA device; about 3-4 minutes on an H100)

Each workload prints a line with its numbers when done (so a run cut short still
reports those), then both tables follow.

Workloads: an MLP 784-512-256-10 SGD step (batch 128), a LeNet-style CNN SGD step
(batch 64), an elementwise chain over 4M float32 values, and softmax cross-entropy
forward + backward on (4096, 1000). Two tables, medians in microseconds per call:

"synchronised": every call is followed by a device synchronise, so each pays its
launch and the wait for the device (10-20 us on an H100) in full.
"pipelined": CALLS back-to-back calls, then one synchronise, divided by CALLS, as a
training loop runs (the host prepares call k+1 while the device runs call k); each
call's result is kept until the next call returns (loss = step(x, y)), as such a loop
does. Columns:

- "call, device": nngraph's call with inputs already on the device (torch tensors),
  outputs left there as tensors; "replayed" says whether those calls replayed a
  captured launch sequence (fn.stats()["replayed"]).
- "call, NumPy": the same call with NumPy inputs and outputs (copies both ways; the
  copy back waits for the device, so both tables give the same time).
- "kernels": the sum of the GPU times of the kernels one call launches (torch.profiler
  over the generated module's run() on bound device buffers); "device/kernels" is
  "call, device" over it (the issue's target: 1.3 or less).
- "torch eager", "torch.compile": the same computation in PyTorch on device tensors,
  its results left on the device.

Every workload runs on its own: one that fails prints its error and the table shows
the rest. NNGRAPH_BENCH_BUDGET (seconds, default 220) skips torch.compile for the
workloads left once the budget is spent, so that the script ends in about 4 minutes.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import nngraph as ng  # noqa: E402

DEV = "cuda"
START = time.perf_counter()
BUDGET = float(os.environ.get("NNGRAPH_BENCH_BUDGET", 220))
NAN = float("nan")


def timeit(fn, reps=50, warmup=5) -> float:
    """Median wall time of fn() in microseconds, the device synchronised after each call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


CALLS = 50    # calls per pipelined round


def timeit_pipelined(fn, rounds=5, warmup=5) -> float:
    """Median over `rounds` of the wall time of CALLS back-to-back calls and one device
    synchronise, per call, in microseconds. The last result is held while the next call
    runs, as `loss = step(x, y)` in a loop holds it."""
    out = None
    for _ in range(warmup):
        out = fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(CALLS):
            out = fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t) / CALLS)
    del out
    return statistics.median(ts) * 1e6


def both(fn, reps=50) -> tuple:
    """(synchronised, pipelined) times of fn, in microseconds per call."""
    return timeit(fn, reps), timeit_pipelined(fn)


def kernel_sum(fn, arrays, reps=20) -> float:
    """GPU time of the kernels of one call, in microseconds: torch.profiler's CUDA
    kernel times over `reps` runs of the generated module on bound device buffers."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from nngraph.interpreter import bind_dims
    r = fn.runner
    env = bind_dims(fn.inputs, arrays)
    b, bd = r.bind(arrays, [p._state["value"] for p in fn._run_params], env)
    for _ in range(3):
        r.module.run(b, bd.sizes)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            r.module.run(b, bd.sizes)
        torch.cuda.synchronize()
    total = 0.0
    for e in prof.key_averages():
        if getattr(e, "device_type", None) == DeviceType.CUDA:
            total += getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0)
    return total / reps if total else NAN


def torch_compiled(f):
    """torch.compile(f), or None when the time budget is spent or it is unavailable."""
    if time.perf_counter() - START > BUDGET:
        print("  torch.compile skipped: time budget spent (NNGRAPH_BENCH_BUDGET)")
        return None
    try:
        return torch.compile(f)
    except Exception as e:  # noqa: BLE001
        print("  torch.compile unavailable:", e)
        return None


def time_torch(make, compiled_fn, eager_fn, reps=50):
    """(eager, compiled) (synchronised, pipelined) pairs of make(f) for f eager and
    compiled; NaN where it fails."""
    t_eager = both(make(eager_fn), reps)
    t_comp = (NAN, NAN)
    if compiled_fn is not None:
        try:
            t_comp = both(make(compiled_fn), reps)
        except Exception as e:  # noqa: BLE001
            print(f"  torch.compile failed: {type(e).__name__}: {str(e)[:200]}")
    return t_eager, t_comp


def measure(name, fn, host_args, reps=50) -> dict:
    """nngraph's numbers for one workload: device call (synchronised and pipelined),
    NumPy call, kernel sum."""
    dev_args = [fn.to_device(a) for a in host_args]
    t_dev = both(lambda: fn(*dev_args), reps)
    replayed = fn.stats()["replayed"]
    t_np = timeit(lambda: fn(*host_args), reps)
    try:
        t_k = kernel_sum(fn, host_args)
    except Exception as e:  # noqa: BLE001 - the profiler is optional: the other columns stand
        print(f"  kernel times unavailable: {type(e).__name__}: {str(e)[:200]}")
        t_k = NAN
    return {"name": name, "device": t_dev, "numpy": t_np, "kernels": t_k, "replayed": replayed,
            "launches": fn.stats()["kernels"], "replay": fn.stats()["replay"]}


# ----------------------------------------------------------------------------- workloads


def sgd_step_torch(tp, lossf, lr, xb, yb):
    """A PyTorch SGD step on device tensors (the loss left on the device)."""
    def step():
        loss = lossf(tp, xb, yb)
        gs = torch.autograd.grad(loss, tp)
        with torch.no_grad():
            torch._foreach_add_(tp, gs, alpha=-lr)
        return loss
    return step


def mlp():
    rng = np.random.default_rng(0)
    B = 128
    X = rng.standard_normal((B, 784)).astype(np.float32)
    Y = rng.integers(0, 10, B).astype(np.int32)
    sizes = [784, 512, 256, 10]
    Ws = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
    x = ng.placeholder(("N", 784), name="x")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    params, h = [], x
    for i, W in enumerate(Ws):
        w = ng.parameter(W, name=f"W{i}")
        bb = ng.parameter(np.zeros(W.shape[1], np.float32), name=f"b{i}")
        params += [w, bb]
        h = h @ w + bb
        if i < len(Ws) - 1:
            h = ng.relu(h)
    loss = ng.cross_entropy(h, y)
    grads = ng.grad(loss, params)
    fn = ng.compile([x, y], loss, {p: p - 0.1 * g for p, g in zip(params, grads)}, target="gpu")
    row = measure("MLP 784-512-256-10 SGD step, batch 128", fn, [X, Y])

    tp = [torch.tensor(p.value, device=DEV, requires_grad=True) for p in params]
    xb, yb = torch.from_numpy(X).to(DEV), torch.from_numpy(Y).to(DEV).long()

    def step_loss(tp, xb, yb):
        h = xb
        for i in range(3):
            h = h @ tp[2 * i] + tp[2 * i + 1]
            if i < 2:
                h = torch.relu(h)
        return F.cross_entropy(h, yb)

    row["eager"], row["compile"] = time_torch(lambda f: sgd_step_torch(tp, f, 0.1, xb, yb),
                                              torch_compiled(step_loss), step_loss)
    return row


def cnn():
    rng = np.random.default_rng(0)
    B = 64
    X = rng.standard_normal((B, 1, 28, 28)).astype(np.float32)
    Y = rng.integers(0, 10, B).astype(np.int32)
    shapes = {"c1": (6, 1, 5, 5), "c2": (16, 6, 5, 5), "f1": (16 * 7 * 7, 120), "f2": (120, 10)}
    vals = {k: (rng.standard_normal(s) * 0.1).astype(np.float32) for k, s in shapes.items()}
    x = ng.placeholder(("N", 1, 28, 28), name="x")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    P = {k: ng.parameter(v, name=k) for k, v in vals.items()}
    h = ng.max_pool2d(ng.relu(ng.conv2d(x, P["c1"], padding=2)), 2)
    h = ng.max_pool2d(ng.relu(ng.conv2d(h, P["c2"], padding=2)), 2)
    h = ng.relu(h.reshape((-1, 16 * 7 * 7)) @ P["f1"]) @ P["f2"]
    loss = ng.cross_entropy(h, y)
    ps = list(P.values())
    grads = ng.grad(loss, ps)
    fn = ng.compile([x, y], loss, {p: p - 0.05 * g for p, g in zip(ps, grads)}, target="gpu")
    row = measure("LeNet-style CNN SGD step, batch 64", fn, [X, Y], reps=30)
    tp = [torch.tensor(vals[k], device=DEV, requires_grad=True) for k in shapes]
    xb, yb = torch.from_numpy(X).to(DEV), torch.from_numpy(Y).to(DEV).long()

    def step_loss(tp, xb, yb):
        h = F.max_pool2d(torch.relu(F.conv2d(xb, tp[0], padding=2)), 2)
        h = F.max_pool2d(torch.relu(F.conv2d(h, tp[1], padding=2)), 2)
        h = torch.relu(h.reshape(-1, 16 * 7 * 7) @ tp[2]) @ tp[3]
        return F.cross_entropy(h, yb)

    row["eager"], row["compile"] = time_torch(lambda f: sgd_step_torch(tp, f, 0.05, xb, yb),
                                              torch_compiled(step_loss), step_loss, reps=30)
    return row


def chain():
    n = 4 * 1024 * 1024
    X = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    x = ng.placeholder((n,), name="x")
    out = ng.tanh(x) * ng.sigmoid(x) + 0.5 * x * x - ng.exp(-ng.abs(x))
    fn = ng.compile([x], out, target="gpu")
    row = measure("elementwise chain, 4M f32", fn, [X])
    xt = torch.from_numpy(X).to(DEV)

    def f(x):
        return torch.tanh(x) * torch.sigmoid(x) + 0.5 * x * x - torch.exp(-torch.abs(x))

    row["eager"], row["compile"] = time_torch(lambda g: (lambda: g(xt)), torch_compiled(f), f)
    return row


def softmax_ce():
    rng = np.random.default_rng(0)
    L = rng.standard_normal((4096, 1000)).astype(np.float32)
    Y = rng.integers(0, 1000, 4096).astype(np.int32)
    z = ng.placeholder(("N", 1000), name="z")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    loss = ng.cross_entropy(z, y)
    fn = ng.compile([z, y], [loss, ng.grad(loss, z)], target="gpu")
    row = measure("softmax cross-entropy fwd+bwd (4096,1000)", fn, [L, Y])
    zt, yt = torch.from_numpy(L).to(DEV), torch.from_numpy(Y).to(DEV).long()

    def f(z, y):
        z = z.detach().requires_grad_(True)
        loss = F.cross_entropy(z, y)
        (g,) = torch.autograd.grad(loss, z)
        return loss, g

    row["eager"], row["compile"] = time_torch(lambda g: (lambda: g(zt, yt)), torch_compiled(f), f)
    return row


# ----------------------------------------------------------------------------- report


def fmt(t) -> str:
    return "n/a" if t is None or t != t else f"{t:,.0f}"


def table(rows, col: int) -> str:
    """The table of timings `col` (0: synchronised, 1: pipelined) of each row."""
    head = ("workload", "call, device", "replayed", "call, NumPy", "kernels", "device/kernels",
            "torch eager", "torch.compile", "launches")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        dev = r["device"][col]
        ratio = dev / r["kernels"] if r["kernels"] == r["kernels"] and r["kernels"] else NAN
        eager, comp = r.get("eager", (NAN, NAN)), r.get("compile", (NAN, NAN))
        lines.append(f"| {r['name']} | {fmt(dev)} | {'yes' if r['replayed'] else 'no'} | "
                     f"{fmt(r['numpy'])} | {fmt(r['kernels'])} | "
                     f"{'n/a' if ratio != ratio else f'{ratio:.2f}x'} | {fmt(eager[col])} | "
                     f"{fmt(comp[col])} | {r['launches']} |")
    return "\n".join(lines)


def main():
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device")
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
          f"triton {__import__('triton').__version__}", flush=True)
    rows = []
    for w in (mlp, cnn, chain, softmax_ce):
        t0 = time.perf_counter()
        try:
            rows.append(w())
            r = rows[-1]
            print(f"{w.__name__}: done in {time.perf_counter() - t0:.0f} s (replay: {r['replay']}); "
                  f"us per call, synchronised / pipelined: nngraph {fmt(r['device'][0])} / {fmt(r['device'][1])}, "
                  f"kernels {fmt(r['kernels'])}, eager {fmt(r['eager'][0])} / {fmt(r['eager'][1])}, "
                  f"torch.compile {fmt(r['compile'][0])} / {fmt(r['compile'][1])}", flush=True)
        except Exception as e:  # noqa: BLE001 - report what works
            print(f"{w.__name__}: FAILED: {type(e).__name__}: {str(e)[:500]}", flush=True)
            traceback.print_exc(limit=4)
    print("\nsynchronised: a device synchronise after every call; medians in microseconds per call\n")
    print(table(rows, 0))
    print(f"\npipelined: {CALLS} calls back to back, then one synchronise; medians in microseconds per call\n")
    print(table(rows, 1))
    print(f"\ntotal {time.perf_counter() - START:.0f} s")


if __name__ == "__main__":
    main()
