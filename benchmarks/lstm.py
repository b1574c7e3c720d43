"""LSTM training step (issue 12, item 7): nngraph's scan against PyTorch's nn.LSTM
(eager, CPU) and JAX's jit(grad) over lax.scan, and optionally against the same cell
unrolled by hand; each framework in a process of its own.

One SGD step of LSTM(F -> H) over T steps of a batch of N sequences, then Dense(10)
and cross-entropy on the last hidden state: forward, backpropagation through time,
update. nngraph runs it twice: ng.nn.LSTM (the layer, batch first) and a
hand-written cell inside ng.scan (time first, as the other frameworks); JAX's cell
has its input projection for all steps hoisted before lax.scan and the four gates
in one product (what a careful JAX user writes). Prints, per variant, the cold
compile time (fresh on-disk cache; for JAX the first call, which traces and
compiles), the kernels per call, the median step time, and memory: for nngraph the
work buffer of one step (fn.stats()["peak_bytes"]: every intermediate, the values
stored for the backward pass included) plus the weights, and how far that is from the
bound the issue sets, T*N*5H floats of stored state plus the weights (the two [N, H]
carries a step needs, h and c forward, dh and dc backward, are printed beside it:
they are the part of the peak outside that bound); for every framework the
process's peak resident memory (ru_maxrss: the runtime itself included, so only
comparable between runs of one framework). The 1-minute load average is printed
per variant: the machine may be shared.

    python benchmarks/lstm.py                          # T=50 N=32 and T=100 N=64, F=H=256
    python benchmarks/lstm.py --T 20 --N 32 --unrolled # one size, with the unrolled cell
    python benchmarks/lstm.py --isa avx2               # every framework held to AVX2 (benchmarks/isa.py)
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from isa import ISAS, framework_env, print_header, probe_all  # noqa: E402  (benchmarks/isa.py)


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


def _nngraph_step(a, variant: str):
    """The training step compiled for target="cpu", and its compile time (cold when
    the cache directory is fresh)."""
    import nngraph as ng
    w = _weights(a)
    p = {k: ng.parameter(v, name=k) for k, v in w.items()}
    y = ng.placeholder(("N",), "int32", name="y")
    if variant == "layer":
        xs = ng.placeholder(("N", "T", a.F), name="xs")            # batch first, as Keras
        lstm = ng.nn.LSTM(a.H)
        lstm.ensure_built(xs)                                      # makes its parameters
        for name, k in (("kernel", "Wx"), ("recurrent_kernel", "Wh"), ("bias", "b")):
            lstm.params[name].value = w[k]
        params = [lstm.params[n] for n in ("kernel", "recurrent_kernel", "bias")] + [p["V"], p["c"]]
        hT = lstm(xs)
    else:
        T = a.T if variant == "unrolled" else "T"
        xs = ng.placeholder((T, "N", a.F), name="xs")
        zeros = ng.broadcast_to(ng.constant(np.zeros((1, a.H), np.float32)), (xs.shape[1], a.H))
        params = list(p.values())
        if variant == "unrolled":
            carry = (zeros, zeros)
            for t in range(a.T):
                carry = _cell(ng, carry, xs[t], p, a.H)
            hT = carry[0]
        else:
            (hT, _), _ = ng.scan(lambda carry, x_t: (_cell(ng, carry, x_t, p, a.H), None), (zeros, zeros), xs)
    loss = ng.cross_entropy(hT @ p["V"] + p["c"], y)
    grads = ng.grad(loss, params)
    t0 = time.perf_counter()
    fn = ng.compile([xs, y], loss, updates={w: w - 0.01 * g for w, g in zip(params, grads)}, target="cpu")
    return fn, time.perf_counter() - t0


def _time_steps(a, step) -> float:
    """Median milliseconds of step() after a.warmup calls."""
    times = []
    for _ in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times[a.warmup:])


def _weight_bytes(a) -> int:
    return sum(v.nbytes for v in _weights(a).values())


def run_nngraph(a, variant: str) -> dict:
    fn, compile_s = _nngraph_step(a, variant)
    X, Y = _data(a)
    if variant == "layer":
        X = np.ascontiguousarray(X.transpose(1, 0, 2))
    step_ms = _time_steps(a, lambda: fn(X, Y))
    st = fn.stats()
    loops = st.get("loops", [])
    names = {"layer": "nngraph ng.nn.LSTM (scan)", "scan": "nngraph cell in ng.scan", "unrolled": "nngraph unrolled"}
    return {"variant": names[variant], "compile_s": compile_s, "kernels": st["kernels"], "step_ms": step_ms,
            "per_step_kernels": [lp["kernels_per_step"] for lp in loops],
            "peak_bytes": st["peak_bytes"] + _weight_bytes(a)}


def run_torch(a) -> dict:
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    lstm = torch.nn.LSTM(a.F, a.H)
    head = torch.nn.Linear(a.H, 10)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01)
    X, Y = _data(a)
    X, Y = torch.from_numpy(X), torch.from_numpy(Y.astype(np.int64))

    def step():
        opt.zero_grad()
        out, (h, c) = lstm(X)
        torch.nn.functional.cross_entropy(head(h[0]), Y).backward()
        opt.step()
    return {"variant": f"torch {torch.__version__} nn.LSTM (eager, {torch.get_num_threads()} threads)",
            "compile_s": 0.0, "kernels": None, "step_ms": _time_steps(a, step), "per_step_kernels": []}


def _jax_loss(jax, jnp, H):
    """The loss of JAX's LSTM: x W for all steps before lax.scan, the gates in one product."""
    def loss(p, xs, y):
        xw = jnp.einsum("tnf,fg->tng", xs, p["Wx"]) + p["b"]
        zeros = jnp.zeros((xs.shape[1], H), xs.dtype)

        def cell(carry, xw_t):
            h, c = carry
            z = xw_t + h @ p["Wh"]
            i, f = jax.nn.sigmoid(z[:, :H]), jax.nn.sigmoid(z[:, H:2 * H])
            g, o = jnp.tanh(z[:, 2 * H:3 * H]), jax.nn.sigmoid(z[:, 3 * H:])
            c2 = f * c + i * g
            return (o * jnp.tanh(c2), c2), None
        (hT, _), _ = jax.lax.scan(cell, (zeros, zeros), xw)
        logp = jax.nn.log_softmax(hT @ p["V"] + p["c"])
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
    return loss


def run_jax(a) -> dict:
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_platforms", "cpu")
    loss = _jax_loss(jax, jnp, a.H)

    @jax.jit
    def step(p, xs, y):
        g = jax.grad(loss)(p, xs, y)
        return jax.tree_util.tree_map(lambda w, d: w - 0.01 * d, p, g)
    X, Y = _data(a)
    state = [{k: jnp.asarray(v) for k, v in _weights(a).items()}]
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    t0 = time.perf_counter()
    jax.block_until_ready(step(state[0], X, Y))
    compile_s = time.perf_counter() - t0

    def one():
        state[0] = jax.block_until_ready(step(state[0], X, Y))
    return {"variant": f"JAX {jax.__version__} jit(grad) over lax.scan", "compile_s": compile_s, "kernels": None,
            "step_ms": _time_steps(a, one), "per_step_kernels": []}


def _run_here(a, which: str) -> dict:
    """This process measures one variant; adds its peak memory and load averages."""
    load0 = os.getloadavg()[0]
    runners = {"torch": run_torch, "jax": run_jax}
    res = runners[which](a) if which in runners else run_nngraph(a, which)
    res["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["load"] = (load0 + os.getloadavg()[0]) / 2
    return res


FRAMEWORK_OF = {"torch": "torch", "jax": "jax"}      # the other variants are nngraph's


HOST_CHOICES = ("blas-choice.json", "llvm-host.json", "host-*.json")   # per-host measured choices, not code


def _fresh_cache(choices_dir: str) -> str:
    """A fresh compile cache for one variant (its compile is cold), holding the run's
    per-host choices from `choices_dir`: every variant runs the BLAS the ISA probe named."""
    d = tempfile.mkdtemp(prefix="nngraph-lstm-bench-")
    for pattern in HOST_CHOICES:
        for path in glob.glob(os.path.join(choices_dir, pattern)):
            shutil.copy2(path, d)
    return d


def _checks(a, frameworks, choices_dir: str) -> list:
    """The ISA probes (benchmarks/isa.py) with the workers' environment: the run's
    choices directory, where the nngraph probe makes the choices the variants copy."""
    return probe_all(a.isa, frameworks, dict(os.environ, NNGRAPH_CACHE_DIR=choices_dir))


def _in_process_of_its_own(a, which: str) -> dict:
    """Run one variant in a fresh Python (its own process; a fresh compile cache with
    the run's per-host choices, a.choices), with its framework's environment under a.isa
    (benchmarks/isa.py)."""
    env = framework_env(FRAMEWORK_OF.get(which, "nngraph"), a.isa)
    env["NNGRAPH_CACHE_DIR"] = _fresh_cache(a.choices)
    args = [sys.executable, __file__, "--only", which, "--T", str(a.T), "--N", str(a.N), "--F", str(a.F),
            "--H", str(a.H), "--steps", str(a.steps), "--warmup", str(a.warmup)]
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    if out.returncode:
        return {"variant": which, "error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _stored_bytes(a) -> int:
    """The issue's stored state of the backward pass: T*N*5H floats."""
    return a.T * a.N * 5 * a.H * 4


def _carry_bytes(a) -> int:
    """The two [N, H] carries a step cannot do without: (h, c) forward, (dh, dc) backward."""
    return 2 * a.N * a.H * 4


def _print_row(r: dict, a) -> None:
    if "error" in r:
        print(f"  {r['variant']:<44} failed: {r['error']}")
        return
    kern = f"  {r['kernels']} kernels" if r["kernels"] is not None else ""
    per = f" ({'+'.join(map(str, r['per_step_kernels']))} per loop step)" if r["per_step_kernels"] else ""
    over = (r["peak_bytes"] - _stored_bytes(a) - _weight_bytes(a)) / 2**10 if "peak_bytes" in r else 0
    mem = f"  peak {r['peak_bytes'] / 2**20:6.2f} MiB (bound {over:+5.0f} KiB)" if "peak_bytes" in r else " " * 34
    print(f"  {r['variant']:<44} compile {r['compile_s']:6.2f} s  step {r['step_ms']:8.2f} ms{mem}"
          f"  maxrss {r['maxrss_mb']:6.0f} MiB  load {r['load']:4.1f}{kern}{per}")


def _one_size(a, which) -> None:
    stored, carries, weights = (f(a) / 2**20 for f in (_stored_bytes, _carry_bytes, _weight_bytes))
    print(f"\nT={a.T}, batch {a.N}: bound = stored state T*N*5H floats {stored:.2f} MiB + weights {weights:.2f} MiB"
          f" = {stored + weights:.2f} MiB; the carries (h, c; dh, dc), 2*N*H floats: {carries * 2**10:.0f} KiB")
    for w in which:
        _print_row(_in_process_of_its_own(a, w), a)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=None, help="one sequence length (default: 50 and 100)")
    ap.add_argument("--N", type=int, default=None, help="its batch (default: 32 for T=50, 64 for T=100)")
    ap.add_argument("--F", type=int, default=256)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--unrolled", action="store_true", help="also the cell unrolled by hand (slow to compile)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--isa", choices=ISAS, default="native",
                    help="avx2: every framework held to AVX2+FMA code paths (an emulation; benchmarks/isa.py)")
    ap.add_argument("--only", choices=["layer", "scan", "unrolled", "torch", "jax"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.only:
        print(json.dumps(_run_here(a, a.only)))
        return
    from machine import cpu_model
    which = (["layer", "scan"] + (["unrolled"] if a.unrolled else []) + ([] if a.no_torch else ["torch"])
             + ([] if a.no_jax else ["jax"]))
    a.choices = tempfile.mkdtemp(prefix="nngraph-lstm-bench-choices-")
    checks = _checks(a, list(dict.fromkeys(FRAMEWORK_OF.get(w, "nngraph") for w in which)), a.choices)
    print(f"LSTM({a.F}->{a.H}) SGD training step, Dense(10) + cross-entropy; {cpu_model()}, "
          f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    print_header(cpu_model(), checks)
    sizes = [(a.T, a.N or 32)] if a.T else [(50, a.N or 32), (100, a.N or 64)]
    for T, N in sizes:
        a.T, a.N = T, N
        _one_size(a, which)


if __name__ == "__main__":
    main()
