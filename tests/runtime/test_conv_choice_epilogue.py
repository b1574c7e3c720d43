"""runtime/conv_choice.py times a one-image inference layer with its kind of epilogue
(passes/lower/conv.epilogue_kind: "" none, "rows" a bias, "points" a residual too): the
direct kernel with it in registers, the BLAS's product with its pass over the output;
1x1 layers of stride 1 are candidates for the direct kernel, read in place."""
import numpy as np
import pytest

import nngraph as ng
from runtime import conv_choice, conv_table

ONE_BY_ONE = dict(N=1, G=1, O=24, Og=24, Cg=16, KH=1, KW=1, K=16, sh=1, sw=1, pt=0, pl=0, dh=1, dw=1,
                  H=7, W=9, OH=7, OW=9)


@pytest.fixture
def told(tmp_path, monkeypatch):
    """time_one_image faked: the epilogue kinds it is told, per output channel count."""
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NNGRAPH_CONV_LAYOUT", raising=False)
    monkeypatch.setattr(conv_table, "answers", {})
    seen = {}

    def fake(geo, dtype):
        seen[geo["Og"]] = geo.get("epilogue", "")
        return {"choice": "one_image", "one_image_s": 1.0}
    monkeypatch.setattr(conv_choice, "time_one_image", fake)
    return seen


def test_the_lowering_tells_the_chooser_the_kind_of_epilogue(told):
    rng = np.random.default_rng(0)
    x = ng.placeholder((1, 16, 7, 9), name="x")
    r = ng.placeholder((1, 8, 7, 9), name="r")
    ws = [ng.parameter(rng.standard_normal((o, 16, 1, 1)).astype(np.float32)) for o in (6, 7, 8)]
    b = ng.parameter(rng.standard_normal((1, 8, 1, 1)).astype(np.float32))
    outs = [ng.conv2d(x, ws[0]), ng.relu(ng.conv2d(x, ws[1]) + b[:, :7]), ng.relu(ng.conv2d(x, ws[2]) + b + r)]
    ng.compile([x, r], outs, target="cpu")
    assert told == {6: "", 7: "rows", 8: "points"}


def test_each_kind_of_epilogue_is_timed_and_kept_apart():
    keys = {conv_choice._one_image_key(dict(ONE_BY_ONE, epilogue=e), "float32") for e in ("", "rows", "points")}
    assert len(keys) == 3


@pytest.mark.parametrize("epilogue", ["", "rows", "points"])
def test_one_by_one_layers_are_timed_direct_with_their_epilogue(monkeypatch, epilogue):
    """The direct kernel is offered for a 1x1 stride-1 layer, compiled with the
    epilogue in registers where the layer has one (a residual operand with "points")."""
    import codegen.llvm.conv_direct as conv_direct
    made = []
    real = conv_direct.compiled_core

    def spy(win, bits=None, epilogue=None):
        made.append((win.in_place, epilogue.describe() if epilogue else ""))
        return real(win, bits, epilogue)
    monkeypatch.setattr(conv_direct, "compiled_core", spy)
    got = conv_choice.time_one_image(dict(ONE_BY_ONE, epilogue=epilogue), "float32")
    assert got["choice"] in conv_choice.ONE_IMAGE_LAYOUTS
    assert min(got["one_image_s"], got["one_image_t_s"], got["one_image_direct_s"]) > 0
    want = {"": "", "rows": "acc row add relu", "points": "acc row add point add relu"}[epilogue]
    assert made == [(True, want)]
    assert "one_image_direct_s" not in conv_choice.time_one_image(dict(ONE_BY_ONE, sh=2, OH=4, OW=5), "float32")


def test_a_padded_one_by_one_layer_is_timed_apart_from_one_read_in_place(tmp_path, monkeypatch):
    """A 1x1 stride-1 layer read in place (direct-eligible, no im2col) and a padded 1x1
    layer of the same output shape (neither) have different timings: the padded one
    must not be told the in-place one's choice (it ran direct, from a copy)."""
    from passes.direct_window import in_place_window
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NNGRAPH_CONV_LAYOUT", raising=False)
    monkeypatch.setattr(conv_table, "answers", {})
    timed = []

    def fake(geo, dtype):
        timed.append(in_place_window(geo))
        return {"choice": "one_image_direct" if in_place_window(geo) else "one_image", "one_image_s": 1.0}
    monkeypatch.setattr(conv_choice, "time_one_image", fake)
    rng = np.random.default_rng(0)
    x, x2 = ng.placeholder((1, 16, 7, 9), name="x"), ng.placeholder((1, 16, 5, 7), name="x2")
    w1, w2 = (ng.parameter(rng.standard_normal((24, 16, 1, 1)).astype(np.float32)) for _ in range(2))
    outs = [ng.conv2d(x, w1), ng.conv2d(x2, w2, padding=1)]
    fn = ng.compile([x, x2], outs, target="cpu")
    assert sorted(timed) == [False, True]
    assert fn.dump("kernels").count("direct DirectWindow") == 1
    vals = rng.standard_normal((1, 16, 7, 9)).astype(np.float32), rng.standard_normal((1, 16, 5, 7)).astype(np.float32)
    for got, want in zip(fn(*vals), ng.compile([x, x2], outs, target="reference")(*vals)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
