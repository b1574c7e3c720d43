"""Loop kernels whose leading axes have size one (a batch of one: [1, C, H, W]) run
over the first real axis, which the backend splits across threads
(passes/coalesce.drop_unit_lead); before, axis 0 was the batch of one and every such
kernel ran on one thread (ResNet-50's max pool at batch 1)."""
import re

import numpy as np
import pytest

import nngraph as ng
from passes.coalesce import drop_unit_lead, unit_lead
from passes.program import Stage, Store, instr


def test_unit_lead_axes_are_dropped_and_indices_renumbered():
    body = [instr("idx", dtype="int64", axis=a) for a in range(4)]
    st = Stage((7,), body + [instr("idx", dtype="int64", axis=4)], (), [Store(0, (0, 1, 2, 3), 4)])
    assert unit_lead((1, 1, 5, 3)) == 2 and unit_lead((1,)) == 0 and unit_lead((4, 1)) == 0
    outer, (new,) = drop_unit_lead((1, 1, 5, 3), [st])
    assert outer == (5, 3)
    assert [i.op for i in new.body[:2]] == ["const", "const"]
    assert [i.attr("axis") for i in new.body[2:]] == [0, 1, 2]          # the inner axis too


@pytest.fixture
def three_threads(monkeypatch):
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "THREAD_WORK", 1 << 8)
    monkeypatch.setattr(entry, "N_THREADS", 3)


@pytest.mark.usefixtures("three_threads")
@pytest.mark.parametrize("batch", [1, 2])
def test_batch_one_max_pool_splits_over_channels(batch):
    rng = np.random.default_rng(0)
    x = ng.placeholder((batch, 16, 14, 13), name="x")
    y = ng.max_pool2d(x, 3, stride=2, padding=1)
    xv = rng.standard_normal((batch, 16, 14, 13)).astype(np.float32)
    fn = ng.compile([x], y, target="cpu")
    np.testing.assert_array_equal(fn(xv), ng.compile([x], y, target="reference")(xv))
    import codegen.llvm.entry as entry
    text, _ = entry.build_module(fn.runner.program)     # before LLVM inlines the launch
    split = re.search(r'@"nngraph_parallel"\(.*@"k0_k0_max_pool2d", i64 (\d+),', text)
    assert split is not None and int(split.group(1)) == (16 if batch == 1 else batch)


@pytest.mark.usefixtures("three_threads")
def test_batch_one_reductions_and_maps_match_the_reference():
    """A softmax over the channels of one image (a reduction stage and a map stage
    under an outer [1, H, W] domain) and a bias + tanh map over [1, C, H, W]."""
    rng = np.random.default_rng(1)
    x = ng.placeholder((1, 6, 9, 10), name="x")
    b = ng.parameter(rng.standard_normal((1, 6, 1, 1)).astype(np.float32), name="b")
    ys = [ng.softmax(x, axis=1), ng.tanh(x + b)]
    xv = rng.standard_normal((1, 6, 9, 10)).astype(np.float32)
    got = ng.compile([x], ys, target="cpu")(xv)
    want = ng.compile([x], ys, target="reference")(xv)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
