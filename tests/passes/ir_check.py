"""Pass tests as text (FileCheck style): IR in, the pass, the expected IR out; and a
check that the rewritten graph computes the same values as the original on seeded
random inputs, through the NumPy reference interpreter."""
from __future__ import annotations

import textwrap

import numpy as np

import nngraph as ng
from nngraph.interpreter import evaluate
from nngraph.types import Dim, np_dtype
from passes.log import Rewrites
from passes.verify import verify


def ir(text: str) -> str:
    """Dedented IR text ending in one newline."""
    return textwrap.dedent(text).strip("\n") + "\n"


def run_pass(pass_fn, text: str):
    """(graph in, graph out, rule counts) for `pass_fn` over the IR `text`."""
    g = ng.parse(ir(text))
    counts = Rewrites()
    out = pass_fn(g, counts)
    verify(out, getattr(pass_fn, "__name__", "pass"), before=g)
    return g, out, counts


def check(pass_fn, before: str, after: str, fired=None, values=True, low=0.5, high=2.0, sizes=3):
    """The pass turns `before` into exactly `after`; `fired` (a rule name or a list)
    fired; and, unless values=False, both graphs compute the same values."""
    g, out, counts = run_pass(pass_fn, before)
    got = ng.format(out)
    assert got == ir(after), f"--- got\n{got}--- expected\n{ir(after)}"
    for rule in ([fired] if isinstance(fired, str) else fired or []):
        assert counts[rule] >= 1, f"rule {rule} did not fire: {dict(counts)}"
    if values:
        assert_same_values(g, out, low=low, high=high, sizes=sizes)
    return counts


def unchanged(pass_fn, text: str):
    """The pass leaves `text` as it is (up to the printer's node order) and fires nothing."""
    g, out, counts = run_pass(pass_fn, text)
    assert ng.format(out) == ng.format(g), f"--- got\n{ng.format(out)}--- expected\n{ng.format(g)}"
    assert not +counts, f"rules fired on a graph they should leave alone: {dict(counts)}"
    return g


def random_feeds(g, low=0.5, high=2.0, sizes=3, seed=0):
    """Seeded inputs for every placeholder (floats uniform in [low, high), never zero;
    ints in [0, 3)) and random parameter values; symbolic sizes bound to `sizes`."""
    rng = np.random.default_rng(seed)
    env = {}

    def shape(t):
        out = []
        for s in t.shape:
            if isinstance(s, Dim):
                env.setdefault(s.name, sizes)
                out.append(env[s.name])
            else:
                out.append(s)
        return tuple(out)

    def draw(t):
        dt = np_dtype(t.dtype)
        if np.dtype(dt).kind == "f":
            return rng.uniform(low, high, shape(t)).astype(dt)
        if np.dtype(dt).kind == "b":
            return rng.integers(0, 2, shape(t)).astype(bool)
        return rng.integers(0, 3, shape(t)).astype(dt)

    feeds = {ph: draw(ph.type) for ph in g.inputs}
    for n in g.nodes():  # sizes that only attributes mention (broadcast_to a [N,4])
        for s in n.shape:
            if isinstance(s, Dim):
                env.setdefault(s.name, sizes)
    for p in g.params():
        p.value = draw(p.type)
    return feeds, env


def assert_same_values(g, out, rtol=1e-5, atol=1e-6, **kw):
    """`g` and `out` give the same outputs and updates on random inputs."""
    feeds, env = random_feeds(g, **kw)
    a = evaluate(g.roots(), feeds, env)
    b = evaluate(out.roots(), feeds, env)
    for k, (u, v) in enumerate(zip(a, b)):
        assert u.dtype == v.dtype and u.shape == v.shape, f"result {k}: {u.dtype}{u.shape} vs {v.dtype}{v.shape}"
        np.testing.assert_allclose(v, u, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"result {k}")
