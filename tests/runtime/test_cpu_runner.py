"""The CPU runner: buffers per set of sizes, arena slots from the memory plan,
outputs and updates the caller owns, check_numerics naming the culprit."""
import os
import sys
import threading

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "codegen"))

import nngraph as ng  # noqa: E402
from passes.program import LoopKernel, Stage, Store
from progbuild import Dim, ProgBuilder, pointwise  # noqa: E402

N = Dim("N")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nncache"))


def _chain(check=False):
    """t1 = x * 2 (temp, slot 0); t2 = log(t1 + p) (temp, slot 1);
    y = t2 - 1 (output) and p_new = t2 + p (update) in one kernel."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N,), "input")
    p = pb.buf("p", "float32", (N,), "param")
    t1 = pb.buf("t1", "float32", (N,), "temp", source="model.py:3")
    t2 = pb.buf("t2", "float32", (N,), "temp", source="model.py:4")
    y = pb.buf("y", "float32", (N,), "output", source="model.py:5")
    pn = pb.update(p)
    pb.plan = {t1: 0, t2: 1}
    b = pb.body()
    i = b.idx(0)
    pointwise(pb, t1, (N,), b, b("mul", b.load(x, i), b("const", value=2.0)))
    pb.schedule[-1].source = "mul at model.py:3"
    b = pb.body()
    i = b.idx(0)
    pointwise(pb, t2, (N,), b, b("log", b("add", b.load(t1, i), b.load(p, i))))
    pb.schedule[-1].source = "log at model.py:4"
    b = pb.body()
    i = b.idx(0)
    v = b.load(t2, i)
    one = b("const", value=1.0)
    pb.kernel(LoopKernel("out", (N,), [Stage((), b.ins, (), [Store(y, (i,), b("sub", v, one)),
                                                                 Store(pn, (i,), b("add", v, b.load(p, i)))])]))
    return pb.build(check)


def test_outputs_and_updates_are_fresh_arrays_and_params_untouched():
    runner, stages = _chain()
    assert "kernel 0" in stages["kernels"] and "slot 0" in stages["kernels"]
    x = np.linspace(0.5, 2, 11).astype(np.float32)
    p = np.linspace(1, 3, 11).astype(np.float32)
    p0 = p.copy()
    (y,), (pn,) = runner.run([x], [p], {"N": 11})
    t2 = np.log(x * 2 + p)
    np.testing.assert_allclose(y, t2 - 1, rtol=1e-6)
    np.testing.assert_allclose(pn, t2 + p, rtol=1e-6)
    np.testing.assert_array_equal(p, p0)
    (y2,), (pn2,) = runner.run([x], [p], {"N": 11})
    assert y2 is not y and pn2 is not pn and not np.shares_memory(y, y2)
    np.testing.assert_array_equal(y, y2)
    # other sizes get their own buffers; the first binding stays valid
    (y3,), _ = runner.run([x[:3].copy()], [p[:3].copy()], {"N": 3})
    np.testing.assert_allclose(y3, t2[:3] - 1, rtol=1e-6)
    assert len(runner._bindings) == 2


def test_check_numerics_names_the_kernel_and_source():
    runner, _ = _chain(check=True)
    x = np.array([1.0, -5.0, 2.0], np.float32)     # log of a negative number: NaN
    p = np.ones(3, np.float32)
    with pytest.raises(ng.NumericsError, match=r"NaN.*t2.*model.py:4"):
        runner.run([x], [p], {"N": 3})
    (y,), _ = runner.run([np.ones(3, np.float32)], [p], {"N": 3})
    np.testing.assert_allclose(y, np.log(3.0) - 1, rtol=1e-6)


def test_without_check_numerics_nan_flows_through():
    runner, _ = _chain(check=False)
    (y,), _ = runner.run([np.array([-5.0], np.float32)], [np.ones(1, np.float32)], {"N": 1})
    assert np.isnan(y[0])


def test_calls_from_several_threads_agree():
    runner, _ = _chain()
    xs = [np.random.default_rng(s).uniform(0.5, 2, 5000).astype(np.float32) for s in range(8)]
    p = np.ones(5000, np.float32)
    want = [runner.run([x], [p], {"N": 5000})[0][0] for x in xs]
    got = [None] * 8

    def work(k):
        for _ in range(20):
            got[k] = runner.run([xs[k]], [p], {"N": 5000})[0][0]
    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_const_and_input_outputs_are_copied():
    pb = ProgBuilder()
    x = pb.buf("x", "float64", (N,), "input")
    c = pb.buf("c", "float64", (2,), "const", value=np.array([1.0, 2.0]))
    pb.outputs += [x, c]
    runner, _ = pb.build()
    a = np.arange(4.0)
    (ox, oc), _ = runner.run([a], [], {"N": 4})
    assert not np.shares_memory(ox, a)
    np.testing.assert_array_equal(ox, a)
    oc[0] = 99
    (_, oc2), _ = runner.run([a], [], {"N": 4})
    np.testing.assert_array_equal(oc2, [1.0, 2.0])
