"""The workloads of benchmarks/run.py, each written once per framework: nngraph,
NumPy by hand, PyTorch eager / torch.compile, JAX jit and PyTensor, plus what its
floor is made of (`floor_parts`: the GEMMs it must do, or the bytes it must move).

A benchmark process imports only the framework it measures (`load`): threads of one
runtime would disturb another's in the same process.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

ng = torch = F = jax = jnp = pytensor = pt = pt_log_softmax = None


def load(framework: str) -> bool:
    """Import `framework`'s modules into this module; False when it is not installed."""
    global ng, torch, F, jax, jnp, pytensor, pt, pt_log_softmax
    try:
        if framework == "nngraph":
            import nngraph as ng
        elif framework.startswith("torch"):
            import torch
            import torch.nn.functional as F
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        elif framework == "jax":
            import jax
            import jax.numpy as jnp
            jax.config.update("jax_platforms", "cpu")
        elif framework == "pytensor":
            import pytensor
            import pytensor.tensor as pt
            from pytensor.tensor.special import log_softmax as pt_log_softmax
            pytensor.config.floatX = "float32"
            # Without a BLAS to link, PyTensor's matrix products run through NumPy's dot
            # (said at the end of the report instead of in a warning).
            warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    except ImportError:
        return False
    return True


def _jax_sgd_steps(loss_fn, params, X, Y):
    """A callable making one jitted SGD step (lr 0.01) of loss_fn(params, X, Y) per call."""
    @jax.jit
    def step(params, x, y):
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        return loss, jax.tree_util.tree_map(lambda p, d: p - 0.01 * d, params, g)
    state = [params]

    def run():
        loss, state[0] = step(state[0], X, Y)
        return float(loss)
    return run


def _pt_function(inputs, outputs, updates=None):
    """PyTensor's default C backend: FAST_RUN rewrites, the C VM linker."""
    return pytensor.function(inputs, outputs, updates=updates, mode="FAST_RUN")


def _pt_cross_entropy(logits, y):
    return -pt.mean(pt_log_softmax(logits, axis=-1)[pt.arange(y.shape[0]), y])


def _pt_sgd(loss, params, lr=0.01):
    return [(p, p - lr * g) for p, g in zip(params, pytensor.grad(loss, params))]


# ----------------------------------------------------------------------------- workloads


def _init(rng, shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


class MLP:
    """Dense layers with relu, softmax cross-entropy, plain SGD (lr 0.01)."""

    def __init__(self, sizes, batch, train=True):
        self.sizes, self.batch, self.train = sizes, batch, train
        rng = np.random.default_rng(0)
        self.W = [_init(rng, (a, b), a) for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [np.full(b, 0.01, np.float32) for b in sizes[1:]]
        self.X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        self.Y = rng.integers(0, sizes[-1], batch).astype(np.int32)
        kind = "step" if train else "inference"
        self.name = f"MLP {'-'.join(map(str, sizes))} {kind} b{batch}"

    def floor_parts(self):
        """The products (m, k, n): each layer forward; in a step also each weight
        gradient h^T g and each input gradient g W^T but the first layer's."""
        B, s = self.batch, self.sizes
        out = [("gemm", (B, a, b)) for a, b in zip(s[:-1], s[1:])]
        if self.train:
            out += [("gemm", (a, B, b)) for a, b in zip(s[:-1], s[1:])]
            out += [("gemm", (B, b, a)) for a, b in zip(s[1:-1], s[2:])]
        return out

    def nngraph(self):
        x = ng.placeholder(("N", self.sizes[0]), name="x")
        y = ng.placeholder(("N",), "int32", name="y")
        Ws = [ng.parameter(w.copy(), name=f"W{i}") for i, w in enumerate(self.W)]
        bs = [ng.parameter(b.copy(), name=f"b{i}") for i, b in enumerate(self.b)]
        h = x
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = h @ W + b
            if i < len(Ws) - 1:
                h = ng.relu(h)
        if not self.train:
            return (lambda: ng.compile([x], h, target="cpu")), lambda fn: (lambda: fn(self.X))
        loss = ng.cross_entropy(h, y)
        ps = Ws + bs
        gs = ng.grad(loss, ps)
        make = lambda: ng.compile([x, y], loss, updates={p: p - 0.01 * g for p, g in zip(ps, gs)}, target="cpu")  # noqa: E731
        return make, lambda fn: (lambda: fn(self.X, self.Y))

    def numpy(self):
        W = [w.copy() for w in self.W]
        b = [v.copy() for v in self.b]
        X, Y = self.X, self.Y

        def step():
            hs, h = [X], X
            for i in range(len(W)):
                h = h @ W[i] + b[i]
                if i < len(W) - 1:
                    h = np.maximum(h, 0)
                hs.append(h)
            if not self.train:
                return h
            z = h - h.max(1, keepdims=True)
            e = np.exp(z)
            s = e.sum(1, keepdims=True)
            loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(len(Y)), Y]))
            g = e / s
            g[np.arange(len(Y)), Y] -= 1
            g /= len(Y)
            for i in range(len(W) - 1, -1, -1):
                gW = hs[i].T @ g
                gb = g.sum(0)
                if i > 0:
                    g = (g @ W[i].T) * (hs[i] > 0)
                W[i] -= 0.01 * gW
                b[i] -= 0.01 * gb
            return loss
        return step

    def _torch_params(self):
        return [torch.tensor(w, requires_grad=True) for w in self.W], [torch.tensor(v, requires_grad=True) for v in self.b]

    def torch(self, compiled=False):
        Ws, bs = self._torch_params()
        X, Y = torch.from_numpy(self.X), torch.from_numpy(self.Y.astype(np.int64))

        def forward(x):
            h = x
            for i in range(len(Ws)):
                h = h @ Ws[i] + bs[i]
                if i < len(Ws) - 1:
                    h = torch.relu(h)
            return h
        fwd = torch.compile(forward) if compiled else forward
        if not self.train:
            def infer():
                with torch.no_grad():
                    return fwd(torch.from_numpy(self.X)).numpy()
            return infer

        def step():
            loss = F.cross_entropy(fwd(X), Y)
            loss.backward()
            with torch.no_grad():
                for p in Ws + bs:
                    p -= 0.01 * p.grad
                    p.grad = None
            return float(loss)
        return step

    def jax(self):
        params = ([jnp.asarray(w) for w in self.W], [jnp.asarray(v) for v in self.b])
        X, Y = self.X, self.Y

        def forward(params, x):
            Ws, bs = params
            h = x
            for i in range(len(Ws)):
                h = h @ Ws[i] + bs[i]
                if i < len(Ws) - 1:
                    h = jax.nn.relu(h)
            return h
        if not self.train:
            f = jax.jit(forward)
            return lambda: np.asarray(f(params, X))

        def loss_fn(params, x, y):
            logits = forward(params, x)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(x.shape[0]), y])

        return _jax_sgd_steps(loss_fn, params, X, Y)

    def pytensor(self):
        Ws = [pytensor.shared(w.copy(), name=f"W{i}") for i, w in enumerate(self.W)]
        bs = [pytensor.shared(v.copy(), name=f"b{i}") for i, v in enumerate(self.b)]
        x, y = pt.matrix("x", dtype="float32"), pt.ivector("y")
        h = x
        for i in range(len(Ws)):
            h = h @ Ws[i] + bs[i]
            if i < len(Ws) - 1:
                h = pt.maximum(h, 0)
        if not self.train:
            f = _pt_function([x], h)
            return lambda: f(self.X)
        loss = _pt_cross_entropy(h, y)
        f = _pt_function([x, y], loss, updates=_pt_sgd(loss, Ws + bs))
        return lambda: float(f(self.X, self.Y))


class CNN:
    """LeNet-5 style: conv 6@5x5 pad 2, relu, maxpool 2, conv 16@5x5, relu, maxpool 2,
    dense 120, 84, 10; softmax cross-entropy; SGD; batch 64 on 1x28x28."""
    name = "LeNet-5 CNN step b64"
    pytensor_note = ("PyTensor has no batched multi-channel conv2d or pooling op (tensor.nnet and "
                     "signal.pool were removed, later the abstract conv ops too: pymc-devs/pytensor "
                     "#124, #1817; tensor.signal.convolve2d is a single-channel SciPy call without "
                     "C code), so this column builds the same LeNet from PyTensor tensor ops: "
                     "conv = 25 shifted slices (im2col) + one matrix product, "
                     "2x2 max-pool = reshape + max")

    def __init__(self, batch=64):
        rng = np.random.default_rng(1)
        self.p = {"c1": _init(rng, (6, 1, 5, 5), 25), "c1b": np.zeros(6, np.float32),
                  "c2": _init(rng, (16, 6, 5, 5), 150), "c2b": np.zeros(16, np.float32),
                  "f1": _init(rng, (16 * 5 * 5, 120), 400), "f1b": np.zeros(120, np.float32),
                  "f2": _init(rng, (120, 84), 120), "f2b": np.zeros(84, np.float32),
                  "f3": _init(rng, (84, 10), 84), "f3b": np.zeros(10, np.float32)}
        self.X = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        self.Y = rng.integers(0, 10, batch).astype(np.int32)
        self.batch = batch

    def floor_parts(self):
        """Each convolution as one whole-batch product (im2col [N*P, C*25] x [C*25, O])
        forward, for its weight gradient, and for conv2's input gradient; the dense
        layers as in MLP."""
        B = self.batch
        convs = [(B * 28 * 28, 25, 6), (B * 10 * 10, 150, 16)]
        dense = [(400, 120), (120, 84), (84, 10)]
        out = [("gemm", c) for c in convs] + [("gemm", (k, m, n)) for m, k, n in convs]
        out.append(("gemm", (convs[1][0], 16, 150)))
        out += [("gemm", (B, a, b)) for a, b in dense] + [("gemm", (a, B, b)) for a, b in dense]
        out += [("gemm", (B, b, a)) for a, b in dense]
        return out

    def nngraph(self):
        x = ng.placeholder(("N", 1, 28, 28), name="x")
        y = ng.placeholder(("N",), "int32", name="y")
        P = {k: ng.parameter(v.copy(), name=k) for k, v in self.p.items()}
        h = ng.relu(ng.conv2d(x, P["c1"], padding=2) + ng.reshape(P["c1b"], (6, 1, 1)))
        h = ng.max_pool2d(h, 2)
        h = ng.relu(ng.conv2d(h, P["c2"]) + ng.reshape(P["c2b"], (16, 1, 1)))
        h = ng.max_pool2d(h, 2)
        h = ng.reshape(h, (x.shape[0], 400))
        h = ng.relu(h @ P["f1"] + P["f1b"])
        h = ng.relu(h @ P["f2"] + P["f2b"])
        loss = ng.cross_entropy(h @ P["f3"] + P["f3b"], y)
        ps = list(P.values())
        gs = ng.grad(loss, ps)
        make = lambda: ng.compile([x, y], loss, updates={p: p - 0.01 * g for p, g in zip(ps, gs)}, target="cpu")  # noqa: E731
        return make, lambda fn: (lambda: fn(self.X, self.Y))

    numpy = None

    def torch(self, compiled=False):
        P = {k: torch.tensor(v, requires_grad=True) for k, v in self.p.items()}
        X, Y = torch.from_numpy(self.X), torch.from_numpy(self.Y.astype(np.int64))

        def forward(x):
            h = F.max_pool2d(torch.relu(F.conv2d(x, P["c1"], P["c1b"], padding=2)), 2)
            h = F.max_pool2d(torch.relu(F.conv2d(h, P["c2"], P["c2b"])), 2).reshape(x.shape[0], 400)
            h = torch.relu(h @ P["f1"] + P["f1b"])
            h = torch.relu(h @ P["f2"] + P["f2b"])
            return h @ P["f3"] + P["f3b"]
        fwd = torch.compile(forward) if compiled else forward

        def step():
            loss = F.cross_entropy(fwd(X), Y)
            loss.backward()
            with torch.no_grad():
                for p in P.values():
                    p -= 0.01 * p.grad
                    p.grad = None
            return float(loss)
        return step

    def jax(self):
        P = {k: jnp.asarray(v) for k, v in self.p.items()}
        X, Y = self.X, self.Y

        def conv(x, w, pad):
            return jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)],
                                                dimension_numbers=("NCHW", "OIHW", "NCHW"))

        def pool(x):
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

        def loss_fn(P, x, y):
            h = pool(jax.nn.relu(conv(x, P["c1"], 2) + P["c1b"][:, None, None]))
            h = pool(jax.nn.relu(conv(h, P["c2"], 0) + P["c2b"][:, None, None])).reshape(x.shape[0], 400)
            h = jax.nn.relu(h @ P["f1"] + P["f1b"])
            h = jax.nn.relu(h @ P["f2"] + P["f2b"])
            logits = h @ P["f3"] + P["f3b"]
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(x.shape[0]), y])

        return _jax_sgd_steps(loss_fn, P, X, Y)

    def pytensor(self):
        P = {k: pytensor.shared(v.copy(), name=k) for k, v in self.p.items()}
        x, y = pt.tensor4("x", dtype="float32"), pt.ivector("y")
        n = x.shape[0]

        def conv(h, w, c_in, c_out, size, pad):      # 5x5, stride 1, NCHW / OIHW
            if pad:
                h = pt.pad(h, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            s = size + 2 * pad - 4
            cols = pt.stack([h[:, :, i:i + s, j:j + s] for i in range(5) for j in range(5)], axis=2)
            cols = cols.dimshuffle(0, 3, 4, 1, 2).reshape((n * s * s, c_in * 25))
            out = cols @ w.reshape((c_out, c_in * 25)).T
            return out.reshape((n, s, s, c_out)).dimshuffle(0, 3, 1, 2), s

        def pool(h, c, s):
            return h.reshape((n, c, s // 2, 2, s // 2, 2)).max(axis=(3, 5)), s // 2

        h, s = conv(x, P["c1"], 1, 6, 28, 2)
        h, s = pool(pt.maximum(h + P["c1b"].dimshuffle("x", 0, "x", "x"), 0), 6, s)
        h, s = conv(h, P["c2"], 6, 16, s, 0)
        h, s = pool(pt.maximum(h + P["c2b"].dimshuffle("x", 0, "x", "x"), 0), 16, s)
        h = h.reshape((n, 400))
        h = pt.maximum(h @ P["f1"] + P["f1b"], 0)
        h = pt.maximum(h @ P["f2"] + P["f2b"], 0)
        loss = _pt_cross_entropy(h @ P["f3"] + P["f3b"], y)
        f = _pt_function([x, y], loss, updates=_pt_sgd(loss, list(P.values())))
        return lambda: float(f(self.X, self.Y))


class Elementwise:
    """f = sum(tanh(x*a + b) * sigmoid(x)) and df/dx over 4M float32."""
    name = "sum(tanh(x*a+b)*sigmoid(x)) + grad, 4M"

    def __init__(self, n=1 << 22):
        rng = np.random.default_rng(2)
        self.x = rng.standard_normal(n).astype(np.float32)
        self.a, self.b = np.float32(0.7), np.float32(0.1)
        self.bytes = 2 * self.x.nbytes          # read x, write dx

    def floor_parts(self):
        return [("bytes", self.bytes)]

    def nngraph(self):
        x = ng.placeholder(("N",), name="x")
        f = (ng.tanh(x * float(self.a) + float(self.b)) * ng.sigmoid(x)).sum()
        (gx,) = ng.grad(f, [x])
        return (lambda: ng.compile([x], [f, gx], target="cpu")), lambda fn: (lambda: fn(self.x))

    def numpy(self):
        x, a, b = self.x, self.a, self.b

        def run():
            t = np.tanh(x * a + b)
            s = 1 / (1 + np.exp(-x))
            f = float((t * s).sum())
            return f, (1 - t * t) * a * s + t * s * (1 - s)
        return run

    def torch(self, compiled=False):
        a, b = float(self.a), float(self.b)

        def fg(x):
            t = torch.tanh(x * a + b)
            s = torch.sigmoid(x)
            return (t * s).sum(), (1 - t * t) * a * s + t * s * (1 - s)
        if compiled:
            fgc = torch.compile(fg)
            return lambda: [v.numpy() for v in fgc(torch.from_numpy(self.x))]

        def run():
            x = torch.from_numpy(self.x).requires_grad_(True)
            f = (torch.tanh(x * a + b) * torch.sigmoid(x)).sum()
            f.backward()
            return float(f), x.grad.numpy()
        return run

    def jax(self):
        a, b = float(self.a), float(self.b)
        f = jax.jit(jax.value_and_grad(lambda x: jnp.sum(jnp.tanh(x * a + b) * jax.nn.sigmoid(x))))
        return lambda: [np.asarray(v) for v in f(self.x)]

    def pytensor(self):
        x = pt.vector("x", dtype="float32")
        f = pt.sum(pt.tanh(x * float(self.a) + float(self.b)) * pt.sigmoid(x))
        fg = _pt_function([x], [f, pytensor.grad(f, x)])
        return lambda: fg(self.x)


class SoftmaxCE:
    """mean softmax cross-entropy of (4096, 1000) logits and its gradient."""
    name = "softmax CE fwd+bwd (4096,1000)"

    def __init__(self):
        rng = np.random.default_rng(3)
        self.z = (rng.standard_normal((4096, 1000)) * 3).astype(np.float32)
        self.y = rng.integers(0, 1000, 4096).astype(np.int32)

    def floor_parts(self):
        """Read the logits and the labels once, write the gradient."""
        return [("bytes", 2 * self.z.nbytes + self.y.nbytes)]

    def nngraph(self):
        z = ng.placeholder(("N", 1000), name="z")
        y = ng.placeholder(("N",), "int32", name="y")
        loss = ng.cross_entropy(z, y)
        (gz,) = ng.grad(loss, [z])
        return (lambda: ng.compile([z, y], [loss, gz], target="cpu")), lambda fn: (lambda: fn(self.z, self.y))

    def numpy(self):
        z0, y = self.z, self.y
        rows = np.arange(len(y))

        def run():
            z = z0 - z0.max(1, keepdims=True)
            e = np.exp(z)
            s = e.sum(1, keepdims=True)
            loss = float(np.mean(np.log(s[:, 0]) - z[rows, y]))
            g = e / s
            g[rows, y] -= 1
            return loss, g / len(y)
        return run

    def torch(self, compiled=False):
        y = torch.from_numpy(self.y.astype(np.int64))

        def fg(z):
            return F.cross_entropy(z, y)
        f = torch.compile(fg) if compiled else fg

        def run():
            z = torch.from_numpy(self.z).requires_grad_(True)
            loss = f(z)
            loss.backward()
            return float(loss), z.grad.numpy()
        return run

    def jax(self):
        y = self.y

        def loss(z):
            return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(z.shape[0]), y])
        f = jax.jit(jax.value_and_grad(loss))
        return lambda: [np.asarray(v) for v in f(self.z)]

    def pytensor(self):
        z, y = pt.matrix("z", dtype="float32"), pt.ivector("y")
        loss = _pt_cross_entropy(z, y)
        f = _pt_function([z, y], [loss, pytensor.grad(loss, z)])
        return lambda: f(self.z, self.y)




def all_workloads() -> list:
    return [MLP((784, 512, 256, 10), 128), MLP((784, 512, 256, 10), 128, train=False), CNN(),
            MLP((64, 128, 10), 32), Elementwise(), SoftmaxCE()]
