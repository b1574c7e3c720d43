"""ng.format / ng.parse: the textual IR prints every graph and reads it back,
`format(parse(s)) == s`, with and without '# file:line' locations."""
import math

import numpy as np
import pytest

import nngraph as ng
from nngraph.interpreter import bind_dims, evaluate
from nngraph.node import ConstValue
from nngraph.textir import _fmt_attr, _Reader


def roundtrip(g, locations=False):
    """Format, parse, format again: the texts must agree; returns (text, parsed graph)."""
    s = ng.format(g, locations=locations)
    g2 = ng.parse(s)
    assert ng.format(g2, locations=locations) == s
    return s, g2


def run(g, feeds, params=None):
    """Interpret a graph's outputs and update values with the given inputs."""
    env = bind_dims(g.inputs, feeds)
    pmap = {id(p): v for p, v in zip(g.params(), params)} if params is not None else None
    return evaluate(list(g.outputs) + [v for _, v in g.updates], dict(zip(g.inputs, feeds)), env, pmap)


def mlp_step():
    rng = np.random.default_rng(0)
    x = ng.placeholder(("N", 6), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W1 = ng.parameter(rng.standard_normal((6, 5)).astype(np.float32), name="W1")
    b1 = ng.parameter(rng.standard_normal(5).astype(np.float32), name="b1")
    W2 = ng.parameter(rng.standard_normal((5, 3)).astype(np.float32), name="W2")
    steps = ng.parameter(np.zeros((), np.int64), name="steps", trainable=False)
    h = ng.relu(x @ W1 + b1)
    logits = h @ W2
    loss = ng.cross_entropy(logits, y)
    acc = ng.mean(ng.cast(ng.equal(ng.argmax(logits, 1), ng.cast(y, "int64")), "float32"))
    grads = ng.grad(loss, [W1, b1, W2])
    updates = [(p, p - 0.1 * gp) for p, gp in zip([W1, b1, W2], grads)] + [(steps, steps + 1)]
    return ng.Graph([x, y], [loss, acc], updates, name="step")


def test_mlp_training_step_round_trips_and_computes_the_same():
    g = mlp_step()
    s, g2 = roundtrip(g)
    assert s.startswith("func @step(%x: f32[N,6], %y: i32[N]) state(%W1: f32[6,5], %b1: f32[5], ")
    assert "%steps: i64[] {trainable=false}" in s
    assert "update %W1 <- %" in s and "update %steps <- %" in s
    assert [p.trainable for p in g2.params()] == [p.trainable for p in g.params()]
    rng = np.random.default_rng(1)
    feeds = [rng.standard_normal((7, 6)).astype(np.float32), rng.integers(0, 3, 7).astype(np.int32)]
    want = run(g, feeds)
    got = run(g2, feeds, [p.value for p in g.params()])
    assert len(got) == len(want) == 2 + 4
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_locations_round_trip_and_restore_where():
    g = mlp_step()
    s, g2 = roundtrip(g, locations=True)
    assert "  # test_textir.py:" in s
    assert s.splitlines()[0] == "func @step("
    for a, b in zip(g.nodes(), g2.nodes()):
        assert (a.op, a.where) == (b.op, b.where)
    assert [p.where for p in g2.params()] == [p.where for p in g.params()]
    # the same graph without locations prints without comments, and still round-trips
    plain = ng.format(g2)
    assert "#" not in plain and ng.format(ng.parse(plain)) == plain


def test_parsed_nodes_without_comments_are_placed_in_the_text():
    s = ("func @f(%x: f32[3]) {\n"
         "  %0 = exp %x : f32[3]\n"
         "  %1 = log %0 : f32[3]  # model.py:12\n"
         "  return %1\n"
         "}\n")
    g = ng.parse(s, source="t.ir")
    assert g.outputs[0].where == "model.py:12"
    assert g.outputs[0].inputs[0].where == "t.ir:2"
    assert g.inputs[0].where == "t.ir:1"


def test_cnn_graph_round_trips():
    rng = np.random.default_rng(2)
    x = ng.placeholder((None, 1, 8, 8), name="img")
    k = ng.parameter(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), name="k")
    y = ng.max_pool2d(ng.relu(ng.conv2d(x, k, padding=1)), 2)
    loss = ng.mean(y * y)
    g = ng.Graph([x], [loss], [(k, k - 0.01 * ng.grad(loss, k))])
    _, g2 = roundtrip(g)
    roundtrip(g, locations=True)
    feeds = [rng.standard_normal((2, 1, 8, 8)).astype(np.float32)]
    for a, b in zip(run(g2, feeds, [k.value]), run(g, feeds)):
        np.testing.assert_array_equal(a, b)


def test_movement_and_reduction_attributes_round_trip():
    rng = np.random.default_rng(3)
    x = ng.placeholder((4, 6), name="x")
    n = ng.placeholder(("B", 6), "float64", name="n")
    parts = [
        ng.transpose(x)[1:5:2, ::3],
        ng.pad(x, [(1, 0), (2, 3)], value=-1.5).max(axis=0, keepdims=True),
        ng.concatenate([x, x * 2.0], axis=1).reshape(2, 24).sum(axis=(0, 1)),
        ng.expand_dims(ng.min(x, axis=1), 0),
        ng.argmax(x, axis=1),
        ng.mean(n, axis=0),
        ng.where(x > 0.5, x, 0.0),
    ]
    g = ng.Graph([x, n], parts)
    _, g2 = roundtrip(g)
    feeds = [rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((5, 6))]
    for a, b in zip(run(g2, feeds), run(g, feeds)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", [
    np.float32(0.1), np.float32(-0.0), np.float32(3.4028235e38), np.float32(1e-8), np.float32(np.inf),
    np.float32(-np.inf), np.float32(np.nan), np.float64(0.1), np.float64(1 / 3), np.float64(-1e300),
    np.float64(5e-324), np.int32(-7), np.int32(2**31 - 1), np.int64(2**62 + 1), np.int64(-2**63),
    np.bool_(True), np.bool_(False),
])
def test_scalar_constants_round_trip_exactly(value):
    c = ng.constant(np.asarray(value))
    s, g2 = roundtrip([c])
    got = g2.outputs[0].attrs["value"].array
    assert got.dtype == np.asarray(value).dtype
    assert got.tobytes() == np.asarray(value).tobytes() or (np.isnan(got) and np.isnan(value))


@pytest.mark.parametrize("arr", [
    np.array([[1.5, -np.inf], [np.nan, 2e-7]], np.float32),
    np.array([0.1, 1e200, -0.0], np.float64),
    np.array([[True, False, True]]),
    np.array([2**40, -3], np.int64),
    np.arange(24, dtype=np.int32).reshape(2, 3, 4),
    np.zeros((0,), np.float32),
    np.zeros((2, 0), np.int32),
])
def test_array_constants_round_trip_exactly(arr):
    s, g2 = roundtrip([ng.constant(arr)])
    assert "dense<" in s
    got = g2.outputs[0].attrs["value"].array
    assert got.dtype == arr.dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


def test_every_dtype_and_symbolic_sizes_in_the_signature():
    xs = [ng.placeholder(("N", None, 3), dt, name=dt) for dt in ("float32", "float64", "int32", "int64", "bool")]
    g = ng.Graph(xs, xs[::-1])
    s, g2 = roundtrip(g)
    anon = xs[0].shape[1].name
    assert s.splitlines()[0] == (f"func @main(%float32: f32[N,{anon},3], %float64: f64[N,_{int(anon[1:]) + 1},3], "
                                 f"%int32: i32[N,_{int(anon[1:]) + 2},3], %int64: i64[N,_{int(anon[1:]) + 3},3], "
                                 f"%bool: bool[N,_{int(anon[1:]) + 4},3]) {{")
    assert [x.type for x in g2.inputs] == [x.type for x in xs]
    assert s.splitlines()[1] == "  return %bool, %int64, %int32, %float64, %float32"


@pytest.mark.parametrize("v", [
    0, -12, 2**63 - 1, 1.0, -2.5e-8, 1e300, math.inf, -math.inf, True, False, None, "float32",
    'a "quoted" # string\nwith a newline and \u00e9', (), (1,), (1, (2, 3), ("s", None)), ng.Dim("N"),
    (ng.Dim("B"), 4), ConstValue(np.array([[1, 2]], np.int64)), ConstValue(np.array([0.5, np.inf], np.float32)),
    ConstValue(np.array(True)),
])
def test_every_attribute_kind_prints_and_reads_back(v):
    text = _fmt_attr(v)
    r = _Reader(text, 1)
    got = r.value()
    assert r.at_end()
    assert got == v and type(got) is type(v)
    assert _fmt_attr(got) == text


def test_nan_attribute_reads_back_as_nan():
    assert math.isnan(_Reader(_fmt_attr(math.nan), 1).value())


def test_updates_and_multiple_outputs_including_repeats_and_sources():
    x = ng.placeholder((2,), name="x")
    a = ng.parameter(np.ones(2, np.float32), name="a")
    b = ng.parameter(np.ones(2, np.float32), name="b")
    y = x * a
    g = ng.Graph([x], [y, y, x, b], [(a, b), (b, a + y)])
    s, g2 = roundtrip(g)
    assert "  update %a <- %b\n  update %b <- %1\n  return %0, %0, %x, %b\n}\n" in s
    assert g2.outputs[0] is g2.outputs[1] and g2.outputs[2] is g2.inputs[0]


def test_a_graph_with_no_outputs_prints_a_bare_return():
    p = ng.parameter(np.ones(2, np.float32), name="p")
    s, g2 = roundtrip(ng.Graph([], [], [(p, p * 2.0)]))
    assert s == ("func @main() state(%p: f32[2]) {\n  %0 = constant 2.0 : f32[]\n"
                 "  %1 = mul %p, %0 : f32[2]\n  update %p <- %1\n  return\n}\n")
    assert g2.outputs == []


def test_names_that_collide_are_made_distinct():
    x1 = ng.placeholder((2,), name="x")
    x2 = ng.placeholder((2,), name="x")
    z = ng.placeholder((2,), name="0")
    sp = ng.placeholder((2,), name="my input")
    anon = ng.placeholder((2,))
    q = ng.parameter(np.ones(2, np.float32), name="x")
    r = ng.parameter(np.ones(2, np.float32))
    s2 = ng.parameter(np.ones(2, np.float32), name="p1")  # the name an unnamed parameter would get
    out = x1 + x2 + z + sp + anon + q + r + s2
    s, g2 = roundtrip(ng.Graph([x1, x2, z, sp, anon], [out]))
    assert s.splitlines()[0] == ("func @main(%x: f32[2], %x_1: f32[2], %0_1: f32[2], %my_input: f32[2], "
                                 "%arg4: f32[2]) state(%x_2: f32[2], %p1: f32[2], %p1_1: f32[2]) {")
    names = [t.name for t in g2.inputs + g2.params()]
    assert len(set(names)) == len(names)


def test_format_accepts_tensors_lists_graphs_and_functions():
    x = ng.placeholder(("N",), name="x")
    y = ng.exp(x)
    one = ng.format(y)
    assert one == ng.format([y]) == ng.format(ng.Graph([x], [y]))
    fn = ng.compile([x], y, target="reference")
    assert ng.format(fn) == one == fn.dump("graph")


HAND_WRITTEN = """\
func @affine(%x: f32[B,3], %s: f64[]) state(%n: i32[] {trainable=false}, %W: f32[3,2], %b: f32[2]) {
  %0 = matmul %x, %W : f32[B,2]
  %1 = add %0, %b : f32[B,2]
  %2 = constant dense<[[1.0, -2.0]]> : f32[1,2]
  %3 = mul %1, %2 : f32[B,2]
  %4 = cast %s {dtype="float32"} : f32[]
  %5 = mul %3, %4 : f32[B,2]
  %6 = sum %5 {axes=(0,), keepdims=false} : f32[2]
  %7 = constant 1 : i32[]
  %8 = add %n, %7 : i32[]
  update %n <- %8
  return %5, %6
}
"""


def test_hand_written_text_parses_formats_back_and_computes():
    g = ng.parse(HAND_WRITTEN)
    assert ng.format(g) == HAND_WRITTEN
    n, W, b = g.params()  # Graph.params() order: updated parameters first
    assert (W.name, b.name, n.name, n.trainable) == ("W", "b", "n", False)
    assert not W.value.any()  # parameters come back holding zeros
    rng = np.random.default_rng(4)
    Wv, bv = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    xv = rng.standard_normal((5, 3)).astype(np.float32)
    y, total, n1 = run(g, [xv, np.float64(0.5)], [np.int32(41), Wv, bv])
    want = (xv @ Wv + bv) * np.array([[1.0, -2.0]], np.float32) * np.float32(0.5)
    np.testing.assert_allclose(y, want, rtol=1e-6)
    np.testing.assert_allclose(total, want.sum(0), rtol=1e-5)
    assert n1 == 42 and n1.dtype == np.int32


def test_hand_written_text_may_use_spaces_comments_and_blank_lines():
    text = """
# a comment before the header

func @f(%a: f32[2, N]) {
  # a full-line comment
  %t = neg %a: f32[2, N]

  return %t
}
"""
    g = ng.parse(text)
    assert ng.format(g) == "func @f(%a: f32[2,N]) {\n  %0 = neg %a : f32[2,N]\n  return %0\n}\n"


BAD = [
    ("", 1, "empty"),
    ("func f(%x: f32[2]) {\n  return %x\n}\n", 1, "expected 'func @name"),
    ("func @f(%x: f32[2]) {\n  %0 = frobnicate %x : f32[2]\n  return %0\n}\n", 2, "unknown op 'frobnicate'"),
    ("func @f(%x: f32[2]) {\n\n  %0 = exp %y : f32[2]\n  return %0\n}\n", 3, "%y is not defined"),
    ("func @f(%x: f32[2]) {\n  %0 = exp %x : f32[3]\n  return %0\n}\n", 2, "exp gives f32[2], the text says f32[3]"),
    ("func @f(%x: q8[2]) {\n  return %x\n}\n", 1, "bad type 'q8[2]'"),
    ("func @f(%x: f32[2]) {\n  %0 = exp %x : f32[2]\n}\n", 3, "no 'return' line"),
    ("func @f(%x: f32[2]) {\n  return %x\n", 2, "missing the closing '}'"),
    ("func @f(%x: f32[2]) {\n  return %x\n}\n%0 = exp %x : f32[2]\n", 4, "text after the closing"),
    ("func @f(%x: f32[2]) {\n  %x = exp %x : f32[2]\n  return %x\n}\n", 2, "%x is defined twice"),
    ("func @f(%x: f32[2], %W: f32[3,4]) {\n  %0 = matmul %x, %W : f32[2]\n  return %0\n}\n", 2, "matmul"),
    ("func @f(%x: f32[2,3], %W: f32[4,5]) {\n  %0 = matmul %x, %W : f32[2,5]\n  return %0\n}\n", 2,
     "inner sizes 3 and 4 differ"),
    ("func @f() {\n  %0 = constant 1.5 : i32[]\n  return %0\n}\n", 2, "does not fit int32"),
    ("func @f() {\n  %0 = constant dense<[1.0, 2.0]> : f32[3]\n  return %0\n}\n", 2, "does not match f32[3]"),
    ("func @f(%x: f32[2]) {\n  %0 = sum %x {axes=(0,)} : f32[]\n  return %0\n}\n", 2, "missing attribute"),
    ("func @f(%x: f32[2]) {\n  %0 = exp %x {a=1,, b=2} : f32[2]\n  return %0\n}\n", 2, "line 2"),
    ("func @f(%x: f32[2]) {\n  update %x <- %x\n  return\n}\n", 2, "not a parameter"),
    ("func @f() state(%W: f32[N]) {\n  return %W\n}\n", 1, "static shape"),
    ("func @f(%x: f32[2]) {\n  return %x\n  %0 = exp %x : f32[2]\n}\n", 3, "nothing may follow 'return'"),
    ("func @f(\n    %x: f32[2],\n    %y f32[2]\n) {\n  return %x\n}\n", 3, "cannot read the declaration"),
]


@pytest.mark.parametrize("text,line,msg", BAD)
def test_parse_errors_name_the_line(text, line, msg):
    with pytest.raises(ng.ParseError) as e:
        ng.parse(text)
    assert str(e.value).startswith(f"line {line}:"), str(e.value)
    assert msg in str(e.value)


def test_functional_composites_dropout_and_second_derivatives_round_trip():
    x = ng.placeholder(("N", 6), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    gamma = ng.parameter(np.linspace(0.5, 1.5, 6).astype(np.float32), name="gamma")
    outs = [ng.softmax(x), ng.log_softmax(x), ng.logsumexp(x, 1), ng.one_hot(y, 6), ng.layer_norm(x, gamma, gamma),
            ng.dropout(x, 0.5, seed=3), ng.elu(x), ng.selu(x), ng.leaky_relu(x), ng.clip(x, -1.0, 1.0),
            ng.mse(x, x * 2.0), ng.binary_cross_entropy(x, ng.sigmoid(x), from_logits=True), ng.cross_entropy(x, y)]
    loss = ng.sum(ng.tanh(x * gamma))
    g1 = ng.grad(loss, gamma)
    g2 = ng.grad(ng.sum(g1 * g1), gamma)  # a gradient of a gradient
    g = ng.Graph([x, y], outs + [g1, g2])
    _, parsed = roundtrip(g)
    roundtrip(g, locations=True)
    rng = np.random.default_rng(5)
    feeds = [rng.standard_normal((4, 6)).astype(np.float32), rng.integers(0, 6, 4).astype(np.int32)]
    params = [p.value for p in g.params()]
    for a, b in zip(run(parsed, feeds, params), run(g, feeds)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", range(8))
def test_random_expression_graphs_round_trip(seed):
    rng = np.random.default_rng(seed)
    xs = [ng.placeholder(("B", 3), name="a"), ng.placeholder((1, 3), "float64", name="b"),
          ng.placeholder((3,), "int32", name="c")]
    pool = list(xs) + [ng.constant(rng.standard_normal(3).astype(np.float32))]
    unary = [ng.exp, ng.tanh, ng.neg, ng.abs, ng.relu, ng.sigmoid, lambda t: t.sum(axis=-1, keepdims=True),
             lambda t: ng.cast(t, "float32"), lambda t: t.max(axis=0, keepdims=True) if t.ndim else t]
    binary = [ng.add, ng.sub, ng.mul, ng.maximum, lambda a, b: ng.where(a > b, a, b)]
    for _ in range(25):
        try:  # some picks do not type-check (sigmoid of an int, [B,3] + [1]): skip those
            if rng.random() < 0.5:
                t = unary[rng.integers(len(unary))](pool[rng.integers(len(pool))])
            else:
                a, b = (pool[i] for i in rng.integers(len(pool), size=2))
                t = binary[rng.integers(len(binary))](a, b)
        except ng.ShapeError:
            continue
        pool.append(t)
    g = ng.Graph(xs, pool[-3:])
    _, parsed = roundtrip(g)
    roundtrip(g, locations=True)
    feeds = [rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((1, 3)),
             rng.integers(-3, 3, 3).astype(np.int32)]
    for a, b in zip(run(parsed, feeds), run(g, feeds)):
        np.testing.assert_array_equal(a, b)
