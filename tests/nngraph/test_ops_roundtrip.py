"""The textual IR round trip, op by op: graphs that use every op defined in
nngraph/ops (with their attributes), constants of every dtype and odd value, and
symbolic sizes print and parse back to the same text."""
import numpy as np
import pytest

import nngraph as ng
from helpers import assert_roundtrip
from nngraph.node import OPS


def _graphs():
    x = ng.placeholder(("N", 3, 6, 6), "float64", name="x")
    w = ng.parameter(np.ones((4, 3, 3, 3)), name="w")
    lab = ng.placeholder(("N",), "int32", name="lab")
    v = ng.placeholder((5,), name="v")
    b = ng.placeholder((5,), "bool", name="b")
    graphs = []

    # conv and pooling, with their gradients and second-order gradient ops
    y = ng.conv2d(x, w, stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2), groups=1)
    p = ng.max_pool2d(ng.tanh(y), 2, 1, 1)
    a = ng.avg_pool2d(p, (2, 1), padding=(1, 0), count_include_pad=False)
    loss = ng.cross_entropy(ng.reshape(a, (-1, 4 * a.shape[2] * a.shape[3]))[:, :4], lab)
    gx, gw = ng.grad(loss, [x, w])
    gg = ng.grad(ng.sum(gx * gx) + ng.sum(gw), x)
    graphs.append(([x, lab], [loss, gx, gw, gg]))

    # elementwise, comparisons, logical, where, cast, pow, reductions, movement
    s = ng.placeholder(("N", 5), name="s")
    outs = [ng.exp(v), ng.log(ng.abs(v) + 1.0), ng.log1p(ng.abs(v)), ng.expm1(v), ng.sqrt(ng.abs(v)),
            ng.rsqrt(ng.abs(v) + 1.0), ng.sign(v), ng.sin(v), ng.cos(v), ng.tanh(v), ng.sigmoid(v), ng.relu(v),
            ng.softplus(v), ng.step(v), -v, ng.stop_gradient(v), v ** 2.5, ng.maximum(v, 0.5), ng.minimum(v, -0.5),
            v / 3.0, v - 1.0, ng.where(b, v, ng.cast(ng.cast(v, "int64"), "float32")),
            ng.logical_and(b, ~b), ng.logical_or(b, ng.equal(v, 1.0)), ng.not_equal(v, v),
            v < 1.0, v <= 1.0, v > 1.0, v >= 1.0, ng.argmax(s, 1), ng.max(s, 0), ng.min(s, 1, keepdims=True),
            ng.mean(s), ng.sum(s, (0, 1)), ng.transpose(s), ng.broadcast_to(v, (2, 5)), ng.pad(v, [(1, 2)], -np.inf),
            ng.concatenate([v, v], 0), ng.stack([v, v], 1), s[:, 1:5:2], ng.one_hot(lab, 7), ng.dropout(s, 0.25, seed=3),
            ng.matmul(s, ng.reshape(v, (5, 1))), ng.softmax(s), ng.layer_norm(s),
            ng.all_reduce(v, "sum"), ng.all_reduce(s), v % 0.75, ng.fmod(v, -0.75),
            ng.max(s, 1, empty_identity=True), ng.bitwise_and(lab, 6) | ng.bitwise_xor(lab, ~lab),
            ng.trunc_div(lab, -3)]
    gs = ng.grad(ng.sum(ng.stack([v, v], 1)[::2] * 1.5), v)  # strided slice vjp: pad with interior
    graphs.append(([v, b, s, lab], outs + [gs]))

    # gather (take, integer indexing, its scatter-add gradient), transposed conv, upsampling
    e = ng.placeholder((7, 4), name="e")
    ids = ng.placeholder(("N", 3), "int64", name="ids")
    picked = e[ids] * 1.0 + ng.take(e, lab, 0)[:, None, :]
    rows = ng.log(ng.softmax(s))[ng.arange(s.shape[0]), lab]
    ge = ng.grad(ng.sum(picked) + ng.sum(e[lab, 2:3]), e)
    up = ng.upsample2d(ng.conv_transpose2d(x, ng.parameter(np.ones((3, 2, 2, 2))), 2, 1, 1), 2)
    graphs.append(([e, ids, s, lab, x], [picked, rows, ge, up]))

    # a loop (scan, scan_output): tuple carry, reverse, its gradient (itself a scan)
    seq = ng.placeholder(("T", "N", 5), name="seq")
    u = ng.parameter(np.ones((5, 5), np.float32), name="u")
    (h, c), hs = ng.scan(lambda hc, xt: ((ng.tanh(xt + hc[0] @ u), hc[1] + 1.0), hc[0]),
                         (s, ng.constant(0.0)), seq, reverse=True)
    graphs.append(([seq, s], [h, c, hs, ng.grad(ng.sum(h) + ng.sum(hs), u)]))

    # constants of every dtype and odd values
    consts = [ng.constant(np.array([1.5, -0.0, np.inf, -np.inf, np.nan, 1e-30, 3.4e38], np.float32)),
              ng.constant(np.array([[0.1, 1 / 3], [2.0 ** -1074, -1e300]], np.float64)),
              ng.constant(np.array([-(2 ** 31), 2 ** 31 - 1], np.int32)),
              ng.constant(np.array([-(2 ** 63), 2 ** 63 - 1], np.int64)),
              ng.constant(np.array([[True, False]])), ng.constant(np.float32(0.1)), ng.constant(np.float64(0.1)),
              ng.constant(np.int64(7)), ng.constant(np.bool_(True)), ng.constant(np.zeros((2, 0), np.float32)),
              ng.constant(np.zeros((0,), np.int32)), ng.constant(np.zeros((0, 3), np.float32))]
    graphs.append(([], consts))
    return graphs


def test_every_graph_round_trips_and_every_op_is_covered():
    from nngraph.graph import toposort
    seen = set()
    for inputs, outputs in _graphs():
        g = ng.Graph(inputs, outputs)
        assert_roundtrip(g)
        seen |= {n.op for n in toposort(outputs)}
    defined = {name for name, op in OPS.items()
               if op.infer is not None and op.infer.__module__.startswith("nngraph.ops") and name != "placeholder"}
    assert defined - seen == set(), f"ops with no round-trip coverage: {sorted(defined - seen)}"


def test_parsed_graph_computes_the_same_values():
    from nngraph.interpreter import evaluate
    inputs, outputs = _graphs()[1]
    g = ng.parse(ng.format(ng.Graph(inputs, outputs)))
    rng = np.random.default_rng(0)
    env = {"N": 3}
    feeds = {}
    for ph in inputs:
        shape = tuple(env[str(d)] if not isinstance(d, int) else d for d in ph.shape)
        feeds[ph] = (rng.integers(0, 5, shape).astype(ph.dtype) if ph.dtype in ("int32", "bool")
                     else rng.standard_normal(shape).astype(np.float32))
    pfeeds = {q: feeds[ph] for q, ph in zip(g.inputs, inputs)}
    from nngraph.ops.random import step_counter
    step_counter().value = np.zeros((), np.int64)
    want = evaluate(outputs, feeds, env)
    got = evaluate(g.outputs, pfeeds, env)
    for a, b_ in zip(want, got):
        np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("text", [
    "func @f(%x: f32[N,3]) {\n  %0 = reshape %x {shape=(N,3,1)} : f32[N,3,1]\n  return %0\n}\n",
    "func @f(%x: f64[2,3]) {\n  %0 = pad %x {pads=((1,0,0),(0,2,1)), value=-inf} : f64[3,7]\n  return %0\n}\n",
])
def test_hand_written_text_round_trips(text):
    assert ng.format(ng.parse(text)) == text
