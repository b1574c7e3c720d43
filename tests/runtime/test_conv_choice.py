"""runtime/conv_choice.py: each conv layer's layout on target="cpu" is the faster one
measured with the generated code's BLAS, once per host and shape (memory, then a
private cache file), unless NNGRAPH_CONV_LAYOUT forces one."""
import json

import numpy as np
import pytest

import nngraph as ng
from runtime import conv_choice

GEO = dict(N="N", G=1, O=4, Og=4, Cg=2, KH=3, KW=3, K=18, sh=1, sw=1, pt=1, pl=1, dh=1, dw=1, H=6, W=6, OH=6, OW=6)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty cache directory and memo; time_layouts counted and made to say `pick`."""
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NNGRAPH_CONV_LAYOUT", raising=False)
    monkeypatch.setattr(conv_choice, "_memo", {})
    calls = []

    def fake(geo, dtype, products):
        calls.append((geo["Og"], dtype, products))
        return {"choice": fake.pick, "batch_s": 2.0, "example_s": 1.0, "examples": 32}
    fake.pick = "example"
    monkeypatch.setattr(conv_choice, "time_layouts", fake)
    return tmp_path, calls, fake


def test_a_shape_is_timed_once_then_read_from_memory_and_from_the_cache_file(fresh, monkeypatch):
    path, calls, _ = fresh
    assert conv_choice.measured_layout(GEO, "float32") == "example"
    assert conv_choice.measured_layout(GEO, "float32") == "example"
    assert len(calls) == 1
    monkeypatch.setattr(conv_choice, "_memo", {})          # a new process: the file answers
    assert conv_choice.measured_layout(GEO, "float32") == "example" and len(calls) == 1
    table = json.loads((path / conv_choice.CACHE_FILE).read_text())
    (entries,) = table.values()
    assert list(entries.values())[0]["choice"] == "example"
    assert conv_choice.measured_layout(dict(GEO, Og=8), "float32") == "example" and len(calls) == 2


def test_a_damaged_cache_file_is_measured_again(fresh, monkeypatch):
    path, calls, fake = fresh
    (path / conv_choice.CACHE_FILE).write_text("{not json")
    fake.pick = "batch"
    assert conv_choice.measured_layout(GEO, "float32") == "batch" and len(calls) == 1
    key = conv_choice.host_key()
    shape = conv_choice._shape_key(GEO, "float32", conv_choice.ALL)
    (path / conv_choice.CACHE_FILE).write_text(json.dumps({key: {shape: {"choice": "sideways"}}}))
    monkeypatch.setattr(conv_choice, "_memo", {})
    assert conv_choice.measured_layout(GEO, "float32") == "batch" and len(calls) == 2


def test_one_example_needs_no_timing(fresh):
    _, calls, _ = fresh
    assert conv_choice.measured_layout(dict(GEO, N=1), "float32") == "batch" and calls == []


def test_the_environment_forces_a_layout_and_names_a_bad_value(monkeypatch):
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "batch")
    assert conv_choice.conv_choice_for("gpu")(GEO, "float32") == "batch"
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "im2row")
    with pytest.raises(ValueError, match="NNGRAPH_CONV_LAYOUT.*'im2row'"):
        conv_choice.conv_choice_for("cpu")
    monkeypatch.delenv("NNGRAPH_CONV_LAYOUT")
    assert conv_choice.conv_choice_for("cpu") is conv_choice.measured_layout
    assert conv_choice.conv_choice_for("gpu")(GEO, "float32") == "example"   # measured faster on an H100
    assert conv_choice.conv_choice_for("reference") is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
def test_the_timed_calls_are_the_products_they_claim(dtype, trans_a, trans_b):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5) if trans_a else (5, 7)).astype(dtype)
    b = rng.standard_normal((9, 7) if trans_b else (7, 9)).astype(dtype)
    c = np.zeros((5, 9), dtype)
    conv_choice._gemm_call(a, b, c, trans_a, trans_b)()
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


def test_timing_both_layouts_gives_a_choice_and_its_numbers():
    got = conv_choice.time_layouts(dict(GEO, N=3), "float32")
    assert got["choice"] in ("batch", "example") and got["examples"] == 3
    assert got[got["choice"] + "_s"] == min(got["batch_s"], got["example_s"]) >= 0
    assert max(got["batch_s"], got["example_s"]) > 0


@pytest.mark.parametrize("pick,product", [("batch", "@t_conv[1,4,N*6*6]"), ("example", "[N,1,4,6*6]")])
def test_the_choice_decides_the_program(fresh, pick, product):
    """The compiled CNN layer follows the measurement: one product over N*6*6 columns
    for the whole batch, a product batched over N per example."""
    _, calls, fake = fresh
    fake.pick = pick
    x = ng.placeholder(("N", 2, 6, 6), name="x")
    w = ng.parameter(np.ones((4, 2, 3, 3), np.float32), name="w")
    fn = ng.compile([x], ng.relu(ng.conv2d(x, w, padding=1)), target="cpu")
    assert product in fn.dump("kernels") and calls == [(4, "float32", ("conv2d",))]
    a = np.random.default_rng(1).standard_normal((3, 2, 6, 6)).astype(np.float32)
    want = ng.compile([x], ng.relu(ng.conv2d(x, w, padding=1)), target="reference")(a)
    np.testing.assert_allclose(fn(a), want, rtol=1e-5, atol=1e-5)


def test_only_the_products_the_graph_makes_are_timed():
    """An inference graph times the forward product alone (per example: one call each;
    whole batch: one call and the copy of its result to NCHW)."""
    rng = np.random.default_rng(2)
    w, cols, gy = (rng.standard_normal(s).astype(np.float32) for s in ((4, 18), (3, 18, 36), (3, 4, 36)))
    assert len(conv_choice._example_calls(w, cols, gy, ("conv2d",))) == 3
    assert len(conv_choice._example_calls(w, cols, gy, conv_choice.ALL)) == 9
    assert len(conv_choice._batch_calls(w, cols, gy, ("conv2d",))) == 2
    assert len(conv_choice._batch_calls(w, cols, gy, conv_choice.ALL)) == 5
