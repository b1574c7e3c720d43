"""target="gpu" against PyTorch eager and torch.compile on the same machine.

    python benchmarks/gpu.py            (needs a CUDA device)

Workloads: an MLP 784-512-256-10 SGD step (batch 128), a LeNet-style CNN step
(batch 64, if conv lowers), an elementwise chain over 4M elements, and softmax
cross-entropy forward + backward on (4096, 1000). For nngraph two numbers: the
whole call (NumPy in, NumPy out: copies to and from the device included) and the
kernels alone (the generated module's run() on device tensors). PyTorch runs on
device tensors; its step numbers include the host copy of the batch and reading
the loss, like nngraph's whole call. Times are medians, in microseconds.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import nngraph as ng  # noqa: E402

DEV = "cuda"


def timeit(fn, reps=50, warmup=5) -> float:
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


def kernels_only(fn, arrays, reps=50) -> float:
    """Time the generated module's run() alone, on buffers already on the device."""
    r = fn.runner
    env = {}
    from nngraph.interpreter import bind_dims
    env = bind_dims(fn.inputs, arrays)
    b, bd = r.bind(arrays, [p.value for p in fn.params], env)
    return timeit(lambda: r.module.run(b, bd.sizes), reps)


def compiled(f):
    try:
        return torch.compile(f)
    except Exception as e:  # pragma: no cover
        print("torch.compile unavailable:", e)
        return None


# ----------------------------------------------------------------------------- workloads


def mlp(rows):
    rng = np.random.default_rng(0)
    B = 128
    X = rng.standard_normal((B, 784)).astype(np.float32)
    Y = rng.integers(0, 10, B).astype(np.int32)
    sizes = [784, 512, 256, 10]
    Ws = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
    x = ng.placeholder(("N", 784), name="x")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    params = []
    h = x
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
    t_call = timeit(lambda: fn(X, Y))
    t_kern = kernels_only(fn, [X, Y])

    tp = [torch.tensor(p.value, device=DEV, requires_grad=True) for p in params]

    def step_loss(tp, xb, yb):
        h = xb
        for i in range(3):
            h = h @ tp[2 * i] + tp[2 * i + 1]
            if i < 2:
                h = torch.relu(h)
        return F.cross_entropy(h, yb)

    def make_step(lossf):
        def step():
            xb = torch.from_numpy(X).to(DEV, non_blocking=True)
            yb = torch.from_numpy(Y).to(DEV, non_blocking=True).long()
            loss = lossf(tp, xb, yb)
            gs = torch.autograd.grad(loss, tp)
            with torch.no_grad():
                torch._foreach_add_(tp, gs, alpha=-0.1)
            return loss.item()
        return step

    t_eager = timeit(make_step(step_loss))
    cl = compiled(step_loss)
    t_comp = timeit(make_step(cl)) if cl else float("nan")
    rows.append(("MLP 784-512-256-10 SGD step, batch 128", t_call, t_kern, t_eager, t_comp, fn.stats()["kernels"]))


def cnn(rows):
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
    t_call = timeit(lambda: fn(X, Y), reps=20)
    t_kern = kernels_only(fn, [X, Y], reps=20)
    tp = [torch.tensor(vals[k], device=DEV, requires_grad=True) for k in shapes]

    def step_loss(tp, xb, yb):
        h = F.max_pool2d(torch.relu(F.conv2d(xb, tp[0], padding=2)), 2)
        h = F.max_pool2d(torch.relu(F.conv2d(h, tp[1], padding=2)), 2)
        h = torch.relu(h.reshape(-1, 16 * 7 * 7) @ tp[2]) @ tp[3]
        return F.cross_entropy(h, yb)

    def make_step(lossf):
        def step():
            xb = torch.from_numpy(X).to(DEV, non_blocking=True)
            yb = torch.from_numpy(Y).to(DEV, non_blocking=True).long()
            loss = lossf(tp, xb, yb)
            gs = torch.autograd.grad(loss, tp)
            with torch.no_grad():
                torch._foreach_add_(tp, gs, alpha=-0.05)
            return loss.item()
        return step

    t_eager = timeit(make_step(step_loss))
    cl = compiled(step_loss)
    t_comp = timeit(make_step(cl)) if cl else float("nan")
    rows.append(("LeNet-style CNN SGD step, batch 64", t_call, t_kern, t_eager, t_comp, fn.stats()["kernels"]))


def chain(rows):
    n = 4 * 1024 * 1024
    X = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    x = ng.placeholder((n,), name="x")
    out = ng.tanh(x) * ng.sigmoid(x) + 0.5 * x * x - ng.exp(-ng.abs(x))
    fn = ng.compile([x], out, target="gpu")
    t_call = timeit(lambda: fn(X), reps=20)
    t_kern = kernels_only(fn, [X])
    xt = torch.from_numpy(X).to(DEV)

    def f(x):
        return torch.tanh(x) * torch.sigmoid(x) + 0.5 * x * x - torch.exp(-torch.abs(x))

    t_eager = timeit(lambda: f(xt))
    cl = compiled(f)
    t_comp = timeit(lambda: cl(xt)) if cl else float("nan")
    rows.append(("elementwise chain, 4M f32 (torch: on device)", t_call, t_kern, t_eager, t_comp, fn.stats()["kernels"]))


def softmax_ce(rows):
    rng = np.random.default_rng(0)
    L = rng.standard_normal((4096, 1000)).astype(np.float32)
    Y = rng.integers(0, 1000, 4096).astype(np.int32)
    z = ng.placeholder(("N", 1000), name="z")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    loss = ng.cross_entropy(z, y)
    fn = ng.compile([z, y], [loss, ng.grad(loss, z)], target="gpu")
    t_call = timeit(lambda: fn(L, Y), reps=20)
    t_kern = kernels_only(fn, [L, Y])
    zt, yt = torch.from_numpy(L).to(DEV), torch.from_numpy(Y).to(DEV).long()

    def f(z, y):
        z = z.detach().requires_grad_(True)
        loss = F.cross_entropy(z, y)
        (g,) = torch.autograd.grad(loss, z)
        return loss, g

    t_eager = timeit(lambda: f(zt, yt))
    cl = compiled(f)
    t_comp = timeit(lambda: cl(zt, yt)) if cl else float("nan")
    rows.append(("softmax cross-entropy fwd+bwd (4096,1000) (torch: on device)", t_call, t_kern, t_eager, t_comp,
                 fn.stats()["kernels"]))


def main():
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device")
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    rows = []
    for w in (mlp, cnn, chain, softmax_ce):
        try:
            w(rows)
        except Exception as e:  # report what works
            print(f"{w.__name__}: skipped: {type(e).__name__}: {str(e)[:300]}")
    head = ("workload", "nngraph call", "nngraph kernels", "torch eager", "torch.compile", "kernels")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, *ts, nk in rows:
        print(f"| {name} | " + " | ".join(f"{t:.0f} us" for t in ts) + f" | {nk} |")


if __name__ == "__main__":
    main()
