"""Reductions over an empty axis. A max has no identity (NumPy raises; nngraph refuses
by name) unless asked for one (`empty_identity=True`: -inf, as np.max(initial=-inf) and
ONNX's ReduceMax); the log-sum-exp forms, whose max is only a shift, give the log of
an empty sum, -inf (as SciPy and PyTorch), instead of refusing a graph the user could
not have made wrong: log(sum(exp(x))) written by hand is rewritten to the shifted form
as it is built, and that rewrite used to raise on an empty axis."""
import numpy as np
import pytest

import nngraph as ng
from helpers import run

FORMS = {
    "logsumexp": lambda x: ng.logsumexp(x, 1),
    "by hand": lambda x: ng.log(ng.sum(ng.exp(x), 1)),
    "by hand, keepdims": lambda x: ng.log(ng.sum(ng.exp(x), 1, keepdims=True))[:, 0],
}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("size", [0, "N"])
def test_log_sum_exp_over_an_empty_axis_is_minus_inf(form, size, target):
    x = ng.placeholder((2, size), "float64")
    y = FORMS[form](x)
    out = run(y, {x: np.zeros((2, 0))}, target)
    np.testing.assert_array_equal(out, [-np.inf, -np.inf])
    if size == "N":     # the same compiled graph on a non-empty axis
        a = np.array([[1.0, 2.0], [800.0, 799.0]])
        want = np.log(np.exp(a - a.max(1, keepdims=True)).sum(1)) + a.max(1)
        np.testing.assert_allclose(run(y, {x: a}, target), want, rtol=1e-12)


@pytest.mark.parametrize("fn", [ng.softmax, ng.log_softmax])
def test_softmax_over_an_empty_axis_is_empty(fn, target):
    x = ng.placeholder((3, "N"), "float32")
    out = run(fn(x, 1), {x: np.zeros((3, 0), np.float32)}, target)
    assert out.shape == (3, 0)


@pytest.mark.parametrize("dtype,low", [("float32", -np.inf), ("int32", np.iinfo(np.int32).min)])
def test_max_with_empty_identity_gives_the_identity(dtype, low, target):
    x = ng.placeholder((2, "N"), dtype)
    outs = run([ng.max(x, 1, empty_identity=True), ng.min(x, 1, empty_identity=True)],
               {x: np.zeros((2, 0), dtype)}, target)
    high = np.inf if dtype == "float32" else np.iinfo(np.int32).max
    np.testing.assert_array_equal(outs[0], [low, low])
    np.testing.assert_array_equal(outs[1], [high, high])


def test_plain_max_over_an_empty_axis_is_refused_by_name(target):
    with pytest.raises(ng.ShapeError, match="axis 1 of size 0"):
        ng.max(ng.placeholder((2, 0)), 1)
    x = ng.placeholder((2, "N"), "float32")
    with pytest.raises(ng.InputError, match="size 0 at this call"):
        run(ng.max(x, 1), {x: np.zeros((2, 0), np.float32)}, target)


NAIVE_TEXT = """func @main(%x: f64[2,N]) {
  %0 = exp %x : f64[2,N]
  %1 = sum %0 {axes=(1,), keepdims=false} : f64[2]
  %2 = log %1 : f64[2]
  return %2
}
"""


def test_stabilize_pass_on_a_parsed_graph_keeps_an_empty_log_sum_exp(target):
    """The stabilisation pass (graphs read from text, passes/rewrites/stabilize.py)
    builds the same shifted form, -inf over an empty axis."""
    g = ng.parse(NAIVE_TEXT)
    assert "max" not in ng.format(g)
    t = "reference" if target == "oracle" else target
    fn = ng.compile(g.inputs, g.outputs[0], target=t)
    assert "max" in fn.dump("opt")
    np.testing.assert_array_equal(fn(np.zeros((2, 0))), [-np.inf, -np.inf])
    np.testing.assert_allclose(fn(np.array([[800.0, 800.0], [0.0, 0.0]])),
                               [800 + np.log(2), np.log(2)], rtol=1e-12)
