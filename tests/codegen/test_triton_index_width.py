"""Index arithmetic width in generated Triton code: int32 for ordinary tensors, int64
once a kernel touches 2**30 elements or more (a static size, or a symbolic one at
launch). The launchers are run with recording stand-ins for the kernels, so nothing
that large is allocated; the int64 kernels themselves run on small data by lowering
the threshold, and must agree with the reference."""
from __future__ import annotations

import re

import numpy as np
import pytest

from gpu_skip import require_gpu_target

require_gpu_target()

import nngraph as ng  # noqa: E402


class Recorder:
    """Stands in for a @triton.jit kernel: records the INDEX64 of each launch."""

    def __init__(self):
        self.index64 = []

    def __getitem__(self, grid):
        return lambda *args, **kw: self.index64.append(kw["INDEX64"])


def launches(fn, sizes, monkeypatch) -> dict:
    """{kernel name: [INDEX64 of each launch]} of one run() at `sizes`, kernels recorded."""
    mod = fn.runner.module
    names = re.findall(r"^def (k\d+_\w+)\(", fn.dump("triton"), flags=re.M)
    recs = {n: Recorder() for n in names}
    for n, r in recs.items():
        monkeypatch.setattr(mod, n, r)
    mod.run({name: None for name in mod.BUFFERS}, sizes)
    return {n: r.index64 for n, r in recs.items() if r.index64}


def test_a_large_static_size_launches_int64_kernels(monkeypatch):
    x = ng.placeholder((2 ** 31 + 8,), name="x")
    fn = ng.compile([x], ng.exp(x) * 2.0, target="gpu")
    assert "if INDEX64:" in fn.dump("triton") and "pid = pid.to(tl.int64)" in fn.dump("triton")
    assert list(launches(fn, {}, monkeypatch).values()) == [[1]]
    y = ng.placeholder((1000,), name="y")
    small = ng.compile([y], ng.exp(y) * 2.0, target="gpu")
    assert list(launches(small, {}, monkeypatch).values()) == [[0]]


def test_a_large_symbolic_size_chooses_int64_at_launch(monkeypatch):
    x = ng.placeholder(("N", 1024), name="x")
    w = ng.parameter(np.ones((1024, 4), np.float32), name="w")
    fn = ng.compile([x], [ng.exp(x), ng.softmax(x), x @ w], target="gpu")
    big = launches(fn, {"N": 2 ** 21}, monkeypatch)          # 2**31 elements in x
    small = launches(fn, {"N": 64}, monkeypatch)
    assert len(big) >= 2 and all(v == [1] for v in big.values())
    assert small.keys() == big.keys() and all(v == [0] for v in small.values())
    # the threshold is the largest tensor a kernel touches, not the output's size
    y = ng.placeholder(("M", 4096), name="y")
    red = ng.compile([y], ng.sum(y, axis=1), target="gpu")
    assert all(v == [1] for v in launches(red, {"M": 2 ** 18}, monkeypatch).values())
    assert all(v == [0] for v in launches(red, {"M": 2 ** 17}, monkeypatch).values())


@pytest.fixture
def int64_everywhere(monkeypatch):
    """Every kernel compiled from now on launches its INDEX64 variant."""
    real = __import__("codegen.triton", fromlist=["load"]).load

    def load(source):
        mod = real(source)
        monkeypatch.setattr(mod, "INDEX64_FROM", 0)
        return mod

    import runtime.gpu  # noqa: F401 - build_program imports load from codegen.triton
    monkeypatch.setattr("codegen.triton.load", load)


def test_int64_kernels_compute_what_the_reference_does(int64_everywhere):
    rng = np.random.default_rng(2)
    x = ng.placeholder(("N", 7), name="x")
    y = ng.placeholder(("N",), dtype="int32", name="y")
    w = ng.parameter(rng.standard_normal((7, 5)).astype(np.float32), name="w")
    logits = ng.tanh(x) @ w
    loss = ng.cross_entropy(logits, y)
    outs = [loss, ng.grad(loss, w), ng.argmax(logits, 1), ng.softmax(logits), ng.sum(x * x)]
    X = rng.standard_normal((9, 7)).astype(np.float32)
    Y = rng.integers(0, 5, 9).astype(np.int32)
    fg = ng.compile([x, y], outs, target="gpu")
    assert fg.runner.module.INDEX64_FROM == 0
    got, want = fg(X, Y), ng.compile([x, y], outs, target="reference")(X, Y)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_int64_split_reduction_matches_numpy(int64_everywhere):
    x = ng.placeholder(("N",), name="x")
    fn = ng.compile([x], [ng.sum(x), ng.max(x), ng.argmax(x, 0)], target="gpu")
    v = np.random.default_rng(4).standard_normal(300_000).astype(np.float32)
    s, m, a = fn(v)
    assert "_part[" in fn.dump("triton")
    np.testing.assert_allclose(s, v.astype(np.float64).sum(), rtol=1e-4)
    assert m == v.max() and a == v.argmax()
