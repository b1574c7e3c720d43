"""Test helpers shared by the suite: compile-and-run on a target, the text round
trip, and a float64 finite-difference gradient check that runs on any target."""
from __future__ import annotations

import numpy as np

import nngraph as ng
from nngraph.interpreter import bind_dims
from nngraph.types import concrete_shape, is_float


def rand(shape, seed=0, dtype="float64", low=None, high=None) -> np.ndarray:
    """Seeded random data, never zeros: standard normal, or uniform in [low, high)."""
    rng = np.random.default_rng(seed)
    if low is not None:
        a = rng.uniform(low, high, size=shape)
    else:
        a = rng.standard_normal(shape)
    return np.asarray(a, dtype=dtype)


def assert_roundtrip(graph) -> str:
    """ng.format(ng.parse(s)) == s for the graph's text, with and without locations."""
    for loc in (False, True):
        s = ng.format(graph, locations=loc)
        back = ng.format(ng.parse(s), locations=loc)
        assert back == s, f"textual IR does not round trip (locations={loc}):\n--- printed\n{s}--- reparsed\n{back}"
    return ng.format(graph)


def _oracle(inputs, outputs, updates=None, check_numerics=False, cast_inputs=False, **_):
    """A Function that runs the graph as built on the node-by-node NumPy interpreter."""
    import importlib
    from runtime.function import Function
    from runtime.reference import GraphInterpreterRunner
    graph, single = importlib.import_module("nngraph.compiler").build_graph(inputs, outputs, updates)
    return Function(graph, GraphInterpreterRunner(graph, check_numerics), "oracle", cast_inputs=cast_inputs,
                    single=single)


def compile(inputs, outputs, target="reference", **kw):
    """ng.compile (or the graph interpreter for target="oracle"), then check that the
    compiled graph round-trips through text."""
    if target == "oracle":
        fn = _oracle(inputs, outputs, **kw)
    else:
        fn = ng.compile(inputs, outputs, target=target, **kw)
    if not getattr(fn, "roundtrip_checked", False):
        assert_roundtrip(fn.graph)
    return fn


def run(outputs, feeds: dict, target="reference", **kw):
    """Compile `outputs` with the placeholders of `feeds` as inputs (in dict order) and
    call it on the fed arrays. One tensor in, one array out; a list in, a list out."""
    inputs = list(feeds)
    fn = compile(inputs, outputs, target=target, **kw)
    return fn(*[feeds[p] for p in inputs])


def tol(dtype) -> dict:
    """Tolerances for comparing a target's result with NumPy, per dtype."""
    return {"float32": dict(rtol=2e-5, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-12)}.get(
        np.dtype(dtype).name, dict(rtol=0, atol=0))


def check_grad(build_fn, arrays, target="reference", wrt=None, shapes=None, eps=1e-6,
               rtol=1e-5, atol=1e-7, seed=1234, max_full=200, directions=4):
    """Check ng.grad of `build_fn(*placeholders)` by central differences in float64.

    `arrays` are the inputs (float ones are made float64; integer ones are fed as they
    are and not differentiated). `shapes` optionally gives placeholder shapes (with
    symbolic sizes such as "N"). A non-scalar output y is reduced to sum(y * r) with a
    random r, so every element of the Jacobian counts. Inputs of at most `max_full`
    elements are checked entry by entry; larger ones along `directions` random
    directions and a sample of coordinates. Returns the analytic gradients.
    """
    arrays = [np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a) for a in arrays]
    shapes = shapes or [a.shape for a in arrays]
    phs = [ng.placeholder(s, a.dtype, name=f"in{i}") for i, (s, a) in enumerate(zip(shapes, arrays))]
    out = build_fn(*phs)
    if wrt is None:
        wrt = [i for i, a in enumerate(arrays) if is_float(phs[i].dtype)]
    rng = np.random.default_rng(seed)
    feeds_extra = []
    inputs = list(phs)
    if out.ndim:
        r_ph = ng.placeholder(out.shape, out.dtype, name="proj")
        cost = ng.sum(out * r_ph)
        env = bind_dims(phs, arrays)
        feeds_extra = [rng.uniform(0.5, 1.5, concrete_shape(out.shape, env)) * rng.choice([-1, 1], concrete_shape(out.shape, env))]
        inputs.append(r_ph)
    else:
        cost = out
    grads = ng.grad(cost, [phs[i] for i in wrt])
    fn = compile(inputs, [cost] + list(grads), target=target)

    def f(vals):
        return float(fn(*vals, *feeds_extra)[0])

    analytic = [np.asarray(g) for g in fn(*arrays, *feeds_extra)[1:]]
    for k, i in enumerate(wrt):
        a, g = arrays[i], analytic[k]
        assert g.shape == a.shape, f"gradient of input {i} has shape {g.shape}, input {a.shape}"
        vals = list(arrays)

        def fd(v):
            vals[i] = a + eps * v
            up = f(vals)
            vals[i] = a - eps * v
            down = f(vals)
            vals[i] = a
            return (up - down) / (2 * eps)

        if a.size <= max_full:
            num = np.zeros_like(a)
            for j in range(a.size):
                e = np.zeros(a.size)
                e[j] = 1.0
                num.reshape(-1)[j] = fd(e.reshape(a.shape))
            np.testing.assert_allclose(g, num, rtol=rtol, atol=atol,
                                       err_msg=f"gradient of input {i} ({a.shape}) vs central differences")
        else:
            for _ in range(directions):
                v = rng.standard_normal(a.shape)
                np.testing.assert_allclose(np.sum(g * v), fd(v), rtol=rtol, atol=atol * np.sqrt(a.size),
                                           err_msg=f"directional derivative of input {i} ({a.shape})")
            for j in rng.choice(a.size, size=min(20, a.size), replace=False):
                e = np.zeros(a.size)
                e[j] = 1.0
                np.testing.assert_allclose(g.reshape(-1)[j], fd(e.reshape(a.shape)), rtol=rtol, atol=atol,
                                           err_msg=f"gradient of input {i} at flat index {j}")
    return analytic


def small_training_step(target):
    """x -> relu(x W + b) V -> cross-entropy, SGD on W, b, V: (fn, (X, Y), {what: the
    file:line that built h, logits and loss}, [W, b, V]); X is 12 x 16."""
    x = ng.placeholder(("N", 16), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W = ng.parameter(ng.init.glorot_uniform((16, 8), seed=0), name="W")
    b = ng.parameter(np.zeros(8, np.float32), name="b")
    V = ng.parameter(ng.init.glorot_uniform((8, 4), seed=1), name="V")
    h = ng.relu(x @ W + b)
    logits = h @ V
    loss = ng.cross_entropy(logits, y)
    gs = ng.grad(loss, [W, b, V])
    fn = ng.compile([x, y], loss, updates={p: p - 0.1 * g for p, g in zip([W, b, V], gs)}, target=target)
    X = np.random.default_rng(0).standard_normal((12, 16)).astype(np.float32)
    Y = (np.arange(12) % 4).astype(np.int32)
    return fn, (X, Y), {"h": h.where, "logits": logits.where, "loss": loss.where}, [W, b, V]
