"""runtime/conv_choice.py: each conv layer's layout on target="cpu" is the faster one
measured with the generated code's BLAS, once per host and shape (memory, then a
private cache file), unless NNGRAPH_CONV_LAYOUT forces one."""
import json
import types

import numpy as np
import pytest

import nngraph as ng
from runtime import conv_choice, conv_table

GEO = dict(N="N", G=1, O=4, Og=4, Cg=2, KH=3, KW=3, K=18, sh=1, sw=1, pt=1, pl=1, dh=1, dw=1, H=6, W=6, OH=6, OW=6)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty cache directory and memo; time_layouts counted and made to say `pick`."""
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NNGRAPH_CONV_LAYOUT", raising=False)
    monkeypatch.setattr(conv_table, "answers", {})
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
    monkeypatch.setattr(conv_table, "answers", {})          # a new process: the file answers
    assert conv_choice.measured_layout(GEO, "float32") == "example" and len(calls) == 1
    table = json.loads((path / conv_table.CACHE_FILE).read_text())
    (entries,) = table.values()
    assert list(entries.values())[0]["choice"] == "example"
    assert conv_choice.measured_layout(dict(GEO, Og=8), "float32") == "example" and len(calls) == 2


def test_a_damaged_cache_file_is_measured_again(fresh, monkeypatch):
    path, calls, fake = fresh
    (path / conv_table.CACHE_FILE).write_text("{not json")
    fake.pick = "batch"
    assert conv_choice.measured_layout(GEO, "float32") == "batch" and len(calls) == 1
    key = conv_choice.host_key()
    shape = conv_choice._shape_key(GEO, "float32", conv_choice.ALL)
    (path / conv_table.CACHE_FILE).write_text(json.dumps({key: {shape: {"choice": "sideways"}}}))
    monkeypatch.setattr(conv_table, "answers", {})
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
    assert isinstance(conv_choice.conv_choice_for("cpu"), conv_choice.MeasuredChoices)   # measured, per compile
    assert conv_choice.conv_choice_for("gpu")(GEO, "float32") == "example"   # measured faster on an H100
    assert conv_choice.conv_choice_for("reference") is None


def test_both_computed_convolutions_are_offered_where_they_apply(fresh, monkeypatch):
    """A batched layer is timed between example, batch and taps; a one-image inference
    layer between channel-major, pixel-major and the direct kernel; NNGRAPH_CONV_LAYOUT
    takes taps (any layer) and direct (one-image inference layers, the others batch)."""
    _, calls, _ = fresh
    seen = []
    monkeypatch.setattr(conv_choice, "time_one_image", lambda geo, dtype: seen.append(geo) or {"choice": "one_image_t"})
    one_image = dict(GEO, N=1, Cg=4, K=36)
    assert conv_choice.measured_layout(one_image, "float32", ("conv2d",)) == "one_image_t" and len(seen) == 1
    assert conv_choice.measured_layout(dict(GEO, N=4), "float32") == "example" and len(calls) == 1
    assert conv_choice.LAYOUTS == ("batch", "example", "taps")
    assert conv_choice.ONE_IMAGE_LAYOUTS == ("one_image", "one_image_t", "one_image_direct")
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "taps")
    assert conv_choice.conv_choice_for("cpu")(GEO, "float32") == "taps"
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", "direct")
    forced = conv_choice.conv_choice_for("cpu")
    assert forced(one_image, "float32", ("conv2d",)) == "one_image_direct"
    assert forced(dict(GEO, N=4), "float32", conv_choice.ALL) == "batch"


def test_the_cache_key_names_the_layouts_on_offer(monkeypatch):
    """A choice stored when fewer layouts were on offer is not reused: the host key
    names both the batched and the one-image layouts."""
    default = conv_choice.host_key.__wrapped__()
    monkeypatch.setattr(conv_choice, "LAYOUTS", ("batch", "example"))
    assert conv_choice.host_key.__wrapped__() != default
    monkeypatch.undo()
    monkeypatch.setattr(conv_choice, "ONE_IMAGE_LAYOUTS", ("one_image", "one_image_t"))
    assert conv_choice.host_key.__wrapped__() != default


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


def test_timing_the_layouts_gives_a_choice_and_its_numbers():
    from runtime.cpu import build_program
    conv_choice.conv_choice_for("cpu", build_program)       # as runtime/cpu.py asks for it
    got = conv_choice.time_layouts(dict(GEO, N=3), "float32")
    assert got["choice"] in ("batch", "example", "taps") and got["examples"] == 3
    seconds = [got["batch_s"], got["example_s"], got["taps_s"]]
    assert got[got["choice"] + "_s"] == min(seconds) >= 0 and max(seconds) > 0
    assert 1 <= got["evidence"].rounds <= conv_choice.ROUNDS    # the chosen layout's rounds (timing_trust)


@pytest.mark.parametrize("rounds, out", [
    ({"batch": [2.0, 1.9], "example": [1.0, 1.1], "taps": [1.2, 1.05]}, {"batch"}),   # 1.9 > 1.1 >= 1.05
    ({"batch": [2.0, 1.0], "example": [1.0, 1.1], "taps": [0.9, 3.0]}, set()),       # each once as fast
    ({"batch": [5.0], "example": [1.0], "taps": [1.0]}, set()),                      # one round: too early
    ({"batch": [5.0, 5.0], "example": [1.0, 1.0]}, {"batch"}),
    ({"batch": [5.0, 5.0]}, set()),
    # the leader's first round (first-touch costs) does not keep a slower layout in:
    # LeNet's second layer, ms
    ({"batch": [1.847, 0.736], "example": [1.657, 1.165], "taps": [2.225, 1.794]}, {"example", "taps"}),
])
def test_a_layout_is_out_once_its_best_round_is_slower_than_each_of_the_leaders(rounds, out):
    assert conv_choice.clearly_slower(rounds) == out


def test_a_clearly_slower_layout_is_timed_no_further(monkeypatch):
    """LeNet's second layer took about five times as long as taps as in its BLAS
    layouts; two rounds of it decide that, the other rounds time the others."""
    import time
    timed = {"taps": 0}

    def slow_taps(geo, dtype, products, examples, build_program):
        def call():
            timed["taps"] += 1
            time.sleep(0.05)
        return call
    monkeypatch.setattr(conv_choice, "taps_call", slow_taps)
    monkeypatch.setitem(conv_choice._builder, "build_program", None)
    monkeypatch.setattr(conv_choice, "BUDGET_S", 1e9)
    got = conv_choice.time_layouts(dict(GEO, N=3), "float32")
    assert got["choice"] != "taps" and got["taps_s"] >= 0.05 and timed["taps"] == 2 < conv_choice.ROUNDS


def _counted_taps(monkeypatch, seconds_per_product):
    """taps_call replaced: each program's call sleeps its products' seconds; the
    programs asked for and the calls made are counted."""
    import time
    asked, calls = [], []

    def fake(geo, dtype, products, examples, build_program):
        asked.append(tuple(products))

        def call():
            calls.append(tuple(products))
            seconds = sum(seconds_per_product[p] for p in products)
            if seconds:         # else faster than any BLAS call
                time.sleep(seconds)
        return call
    monkeypatch.setattr(conv_choice, "taps_call", fake)
    monkeypatch.setitem(conv_choice._builder, "build_program", None)
    monkeypatch.setattr(conv_choice, "BUDGET_S", 1e9)
    return asked, calls


def test_taps_code_for_the_other_products_is_not_built_once_the_first_is_clearly_slower(monkeypatch):
    asked, calls = _counted_taps(monkeypatch, {"conv2d": 0.05, "conv2d_grad_input": 0, "conv2d_grad_filter": 0})
    got = conv_choice.time_layouts(dict(GEO, N=3), "float32")
    assert asked == [("conv2d",)] and len(calls) == 2
    assert got["choice"] != "taps" and got["taps_s"] >= 0.05 and got["taps_products"] == "conv2d"


def test_taps_time_covers_every_product_once_the_first_is_not_clearly_slower(monkeypatch):
    asked, calls = _counted_taps(monkeypatch, {"conv2d": 0, "conv2d_grad_input": 0, "conv2d_grad_filter": 0.05})
    got = conv_choice.time_layouts(dict(GEO, N=3), "float32")
    rest = ("conv2d_grad_input", "conv2d_grad_filter")
    assert asked == [("conv2d",), rest]
    # two rounds of the first product alone, then at least two of all (where the whole is
    # clearly slower it is timed no further)
    assert calls[:2] == [("conv2d",)] * 2 and calls[2:].count(rest) >= 2
    assert got["taps_products"] == "conv2d+" + "+".join(rest) and got["taps_s"] >= 0.05
    assert got["choice"] != "taps"


def test_a_layer_of_one_product_compiles_its_taps_code_once(monkeypatch):
    asked, calls = _counted_taps(monkeypatch, {"conv2d": 0})
    got = conv_choice.time_layouts(dict(GEO, N=3), "float32", ("conv2d",))
    assert asked == [("conv2d",)] and len(calls) == conv_choice.ROUNDS and got["taps_products"] == "conv2d"


def test_timing_operands_are_drawn_in_their_dtype():
    from runtime.conv_taps_timing import timing_operand
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64", "float16"):
        a = timing_operand(rng, (3, 4), dtype)
        assert a.dtype == np.dtype(dtype) and a.shape == (3, 4) and np.all((a >= 0) & (a <= 1)) and a.std() > 0


@pytest.mark.parametrize("geo", [
    dict(GEO, N=2),
    dict(GEO, N=2, sh=2, sw=2, OH=3, OW=3),                            # "same" at stride 2: one row more below
    dict(GEO, N=2, G=2, O=4, Og=2, Cg=1, K=9, dh=2, dw=1, pt=0, pl=1, OH=2, OW=6),
])
def test_the_taps_timing_runs_the_layer_it_is_given(geo):
    """runtime/conv_taps_timing.py rebuilds the layer from its geometry (padding below
    and right as the output size needs) and runs its products."""
    from runtime.conv_taps_timing import taps_call
    from runtime.cpu import build_program
    taps_call(geo, "float32", conv_choice.ALL, geo["N"], build_program)()


@pytest.mark.parametrize("pick,product", [("batch", "@t_conv[1,4,N*6*6]"), ("example", "[N,1,4,6*6]"),
                                          ("taps", "@shifted_rows: f32[3,N,2,8,6]")])
def test_the_choice_decides_the_program(fresh, pick, product):
    """The compiled CNN layer follows the measurement: one product over N*6*6 columns
    for the whole batch, a product batched over N per example, no product but loops
    over the windows of the shifted input rows in the taps layout."""
    _, calls, fake = fresh
    fake.pick = pick
    x = ng.placeholder(("N", 2, 6, 6), name="x")
    w = ng.parameter(np.ones((4, 2, 3, 3), np.float32), name="w")
    fn = ng.compile([x], ng.relu(ng.conv2d(x, w, padding=1)), target="cpu")
    assert product in fn.dump("kernels") and calls == [(4, "float32", ("conv2d",))]
    assert (fn.stats()["library_calls"] == 0) == (pick == "taps")
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


def _fake_one_image(monkeypatch, pick):
    calls = []

    def fake(geo, dtype):
        calls.append((geo["Og"], dtype))
        return {"choice": pick, "one_image_s": 2.0, "one_image_t_s": 1.0}
    monkeypatch.setattr(conv_choice, "time_one_image", fake)
    return calls


def test_one_image_inference_is_timed_between_its_orientations(fresh, monkeypatch):
    """One image, one group, only the forward product: timed once per shape (then memory,
    then the file); with gradients, or in groups, nothing to time."""
    path, layout_calls, _ = fresh
    calls = _fake_one_image(monkeypatch, "one_image_t")
    one = dict(GEO, N=1)
    assert conv_choice.measured_layout(one, "float32", ("conv2d",)) == "one_image_t"
    assert conv_choice.measured_layout(one, "float32", ("conv2d",)) == "one_image_t" and len(calls) == 1
    monkeypatch.setattr(conv_table, "answers", {})
    assert conv_choice.measured_layout(one, "float32", ("conv2d",)) == "one_image_t" and len(calls) == 1
    assert conv_choice.measured_layout(one, "float32") == "batch"
    assert conv_choice.measured_layout(dict(one, G=2), "float32", ("conv2d",)) == "batch"
    assert len(calls) == 1 and layout_calls == []


def test_timing_one_image_gives_a_choice_and_its_numbers(monkeypatch):
    """Another layout than channel-major where it beats it in most rounds and in its
    best time, the better of two such: with calls faked to take 2 s (channel-major)
    against the pixel-major and direct times below, channel-major stays while the
    others lose most rounds; one that wins most rounds is chosen over one with a
    single fast round."""
    import codegen.llvm.conv_direct as conv_direct
    got = conv_choice.time_one_image(dict(GEO, N=1), "float32")
    assert got["choice"] in conv_choice.ONE_IMAGE_LAYOUTS
    assert min(got["one_image_s"], got["one_image_t_s"], got["one_image_direct_s"]) > 0
    assert got[got["choice"] + "_s"] <= got["one_image_s"]
    assert 1 <= got["evidence"].rounds <= conv_choice.ROUNDS
    assert "one_image_direct_s" not in conv_choice.time_one_image(dict(GEO, N=1), "float64")
    slow = [3.0] * 5
    for pixel_major, direct, choice in (([1.0, 3.0, 3.0, 3.0, 3.0], slow, "one_image"),
                                        ([1.0, 1.0, 3.0, 1.0, 1.0], slow, "one_image_t"),
                                        ([1.5] * 5, [1.0, 1.0, 3.0, 1.0, 1.0], "one_image_direct"),
                                        ([0.5, 3.0, 3.0, 3.0, 3.0], [1.0] * 5, "one_image_direct"),
                                        ([1.5] * 5, [1.0, 1.8, 1.9, 1.7, 1.6], "one_image_direct")):
        now = {"t": 0.0}
        steps = {False: iter([2.0] * 5), True: iter(pixel_major), "direct": iter(direct)}

        def fake_gemm(a, b, c, trans_a, trans_b, one_thread=False, steps=steps, now=now):
            def call():
                now["t"] += next(steps[trans_a])
            return call

        def fake_core(win, steps=steps, now=now):
            def call(x, w, y):
                now["t"] += next(steps["direct"])
            return call
        monkeypatch.setattr(conv_choice, "_gemm_call", fake_gemm)
        monkeypatch.setattr(conv_direct, "compiled_core", fake_core)
        clock = (lambda now=now: now["t"])
        monkeypatch.setattr(conv_choice, "time", types.SimpleNamespace(perf_counter=clock, thread_time=clock))
        monkeypatch.setattr(conv_choice, "BUDGET_S", 1e9)
        got = conv_choice.time_one_image(dict(GEO, N=1), "float32")
        assert (got["one_image_s"], got["one_image_t_s"], got["one_image_direct_s"], got["choice"]) == \
            (2.0, min(pixel_major), min(direct), choice)


@pytest.mark.parametrize("pick,product", [("one_image", "@out0_view[4,6*6]"), ("one_image_t", "@t_conv[36,4]")])
def test_the_one_image_choice_decides_the_program(fresh, monkeypatch, pick, product):
    """Channel-major [Og, OH*OW] written into y, or pixel-major [OH*OW, Og] = colsᵀ @ wᵀ
    with an epilogue that writes NCHW y; both as the reference computes. A training
    graph at the same shape keeps the channel-major product and times nothing."""
    calls = _fake_one_image(monkeypatch, pick)
    x = ng.placeholder((1, 2, 6, 6), name="x")
    w = ng.parameter(np.random.default_rng(3).standard_normal((4, 2, 3, 3)).astype(np.float32), name="w")
    y = ng.relu(ng.conv2d(x, w, padding=1))
    fn = ng.compile([x], y, target="cpu")
    assert product in fn.dump("kernels") and calls == [(4, "float32")]
    a = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(fn(a), ng.compile([x], y, target="reference")(a), rtol=1e-5, atol=1e-5)
    (gw,) = ng.grad(ng.sum(y * y), [w])
    assert "@t_conv[36,4]" not in ng.compile([x], [y, gw], target="cpu").dump("kernels") and len(calls) == 1


def test_a_partial_taps_time_never_leads_when_the_budget_ends_early(monkeypatch):
    """Round 1 alone spends the budget while taps has timed only its first product
    (2 ms of its 12): that lower bound must not beat the BLAS layouts' whole 6 ms."""
    import time

    def sleeping(seconds):
        return lambda *args: [lambda: time.sleep(seconds)]
    asked, calls = _counted_taps(monkeypatch, {"conv2d": 0.002, "conv2d_grad_input": 0.005, "conv2d_grad_filter": 0.005})
    monkeypatch.setattr(conv_choice, "_example_calls", sleeping(0.006))
    monkeypatch.setattr(conv_choice, "_batch_calls", sleeping(0.006))
    monkeypatch.setattr(conv_choice, "BUDGET_S", 0.01)
    got = conv_choice.time_layouts(dict(GEO, N=3), "float32")
    assert got["choice"] != "taps" and got["taps_s"] >= 0.012
    assert got["taps_products"] == "conv2d+conv2d_grad_input+conv2d_grad_filter"
