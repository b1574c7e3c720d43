"""A small training step shared by the target="gpu" runtime tests (device arrays, replay)."""
import numpy as np

import nngraph as ng


def mlp_step(target, seed=0):
    """An SGD step of a 2-layer MLP on (x: f32[N,6], y: i32[N]) returning [loss, logits];
    returns (fn, params)."""
    rng = np.random.default_rng(seed)
    x = ng.placeholder(("N", 6), name="x")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    ps = [ng.parameter(rng.standard_normal((6, 8)).astype(np.float32), name="W1"),
          ng.parameter(np.zeros(8, np.float32), name="b1"),
          ng.parameter(rng.standard_normal((8, 4)).astype(np.float32), name="W2")]
    logits = ng.relu(x @ ps[0] + ps[1]) @ ps[2]
    loss = ng.cross_entropy(logits, y)
    gs = ng.grad(loss, ps)
    fn = ng.compile([x, y], [loss, logits], {p: p - 0.1 * g for p, g in zip(ps, gs)}, target=target)
    return fn, ps


def mlp_batch(n, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 4, n).astype(np.int32)
