"""Lowering of each op family: the instructions and kernels it becomes, and conv /
pooling (forward and gradients) through the Program at opt_level 0 and 2."""
from __future__ import annotations

import numpy as np
import pytest

import nngraph as ng
from nngraph.graph import Graph
from nngraph.node import OPS
from passes.lowering import to_program
from passes.program import LoopKernel, MatmulKernel, format_program

from test_program_interpreter import check

RNG = np.random.default_rng(2)


def ops_of(prog):
    out = set()
    for k in prog.schedule:
        stages = k.stages if isinstance(k, LoopKernel) else ([k.epilogue] if k.epilogue else [])
        for s in stages:
            out |= {i.op for i in s.body}
    return out


def test_every_registered_op_has_a_lowering():
    from passes.lower import inline, lowering
    for name, op in OPS.items():
        if op.kind == "source":
            continue
        known = inline.rule(name) is not None or lowering.rule(name) is not None
        assert known, name


def test_elementwise_ops_become_scalar_instructions_named_as_graph_ops():
    x = ng.placeholder((3,), name="x")
    prog = to_program(Graph([x], [ng.softplus(ng.sigmoid(x) * ng.tanh(x))]), 2)
    assert {"softplus", "sigmoid", "tanh", "mul", "load"} <= ops_of(prog)
    assert len(prog.schedule) == 1


def test_broadcast_axes_load_at_index_zero():
    x = ng.placeholder((3, 4), name="x")
    c = ng.parameter(RNG.standard_normal((3, 1)).astype(np.float32), name="c")
    prog = to_program(Graph([x], [x + c]), 2)
    body = prog.schedule[0].stages[0].body
    (load_c,) = [i for i in body if i.op == "load" and prog.buffers[i.attr("buffer")].name == "c"]
    zero = body[load_c.args[1]]
    assert zero.op == "const" and zero.attr("value") == 0


def test_reshape_uses_floordiv_and_mod_and_pad_uses_masked_loads():
    x = ng.placeholder((4, 6), name="x")
    prog = to_program(Graph([x], [ng.reshape(ng.exp(x), (3, 8)), ng.pad(x, ((1, 1), (0, 2)), 3.0)]), 2)
    ops = ops_of(prog)
    assert {"floordiv", "mod", "where"} <= ops
    masked = [i for k in prog.schedule for s in k.stages for i in s.body if i.op == "load" and i.attr("masked")]
    assert masked


def test_opt_level_0_is_one_kernel_per_op_and_matmul_is_a_library_call():
    x = ng.placeholder((2, 3), name="x")
    W = ng.parameter(RNG.standard_normal((3, 4)).astype(np.float32), name="W")
    prog = to_program(Graph([x], [ng.relu(x @ W + 1.0)]), 0)
    assert [type(k).__name__ for k in prog.schedule] == ["MatmulKernel", "LoopKernel", "LoopKernel"]
    assert prog.stats["library_calls"] == 1


def test_dump_names_buffers_kernels_and_the_schedule():
    x = ng.placeholder(("N", 3), name="x")
    W = ng.parameter(RNG.standard_normal((3, 4)).astype(np.float32), name="W")
    text = format_program(to_program(Graph([x], [ng.softmax(x @ W)]), 2))
    assert "@W: f32[3,4] param" in text and "matmul" in text and "reduce max" in text
    assert "returns @out0" in text


def test_uniform_lowers_to_the_counter_based_instruction():
    x = ng.placeholder((4, 5), name="x")
    prog = to_program(Graph([x], [ng.dropout(x, 0.25, seed=3)]), 2)
    (u,) = [i for k in prog.schedule for s in k.stages for i in s.body if i.op == "uniform"]
    assert u.attr("seed") == 3


CONV_CASES = [
    dict(stride=1, padding=0, dilation=1, groups=1),
    dict(stride=2, padding=1, dilation=1, groups=1),
    dict(stride=1, padding=2, dilation=2, groups=1),
    dict(stride=(2, 1), padding=1, dilation=1, groups=2),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv2d_and_its_gradients_through_the_program(case):
    kw = CONV_CASES[case]
    x = ng.placeholder(("N", 4, 7, 6), name="x")
    w = ng.parameter(RNG.standard_normal((6, 4 // kw["groups"], 3, 3)).astype(np.float32), name="w")
    b = ng.parameter(RNG.standard_normal((6, 1, 1)).astype(np.float32), name="b")
    y = ng.relu(ng.conv2d(x, w, **kw) + b)
    loss = ng.sum(y * y)
    gx, gw = ng.grad(loss, [x, w])
    progs = check([x], [y, loss, gx, gw], [RNG.standard_normal((2, 4, 7, 6)).astype(np.float32)],
                  updates=[(w, w - 0.01 * gw)], rtol=2e-4, atol=2e-4)
    lib = progs[2].stats["library_calls"]
    assert lib == 3  # conv, its input gradient and its filter gradient are GEMMs
    conv = [k for k in progs[2].schedule if isinstance(k, MatmulKernel)][0]
    assert conv.epilogue is not None  # bias + relu fused


@pytest.mark.parametrize("kind", ["max", "avg", "avg_nopad"])
def test_pooling_and_its_gradients_through_the_program(kind):
    x = ng.placeholder(("N", 2, 7, 8), name="x")
    if kind == "max":
        y = ng.max_pool2d(ng.tanh(x), 3, stride=2, padding=1)
    else:
        y = ng.avg_pool2d(ng.tanh(x), 3, stride=2, padding=1, count_include_pad=(kind == "avg"))
    loss = ng.sum(y * y)
    gx = ng.grad(loss, x)
    ggx = ng.grad(ng.sum(gx * gx), x) if kind != "max" else gx
    check([x], [y, loss, gx, ggx], [RNG.standard_normal((2, 2, 7, 8)).astype(np.float32)], rtol=2e-4, atol=2e-5)


def test_max_pool_select_and_int_pooling():
    from nngraph.node import make
    x = ng.placeholder((1, 2, 6, 6), name="x")
    h = ng.placeholder((1, 2, 6, 6), name="h")
    sel = make("max_pool2d_select", (x, h), kernel=(2, 2), stride=(2, 2), padding=((0, 0), (0, 0)))
    xi = ng.placeholder((1, 1, 4, 4), "int32", name="xi")
    check([x, h, xi], [sel, ng.max_pool2d(xi, 2)],
          [RNG.standard_normal((1, 2, 6, 6)).astype(np.float32), RNG.standard_normal((1, 2, 6, 6)).astype(np.float32),
           RNG.integers(-5, 5, (1, 1, 4, 4)).astype(np.int32)])


def test_a_stored_concatenation_of_equal_pieces_is_one_pass_over_a_piece(target):
    """Each piece is computed once, where it is stored (the value rule would evaluate
    every piece, masked, at each of the 3x more elements); pieces of different sizes
    are read by masks, as any materialised movement value."""
    import helpers
    x, y = ng.placeholder(("N", 3), name="x"), ng.placeholder(("N", 3), name="y")
    t = ng.tanh(x) * y
    pieces = [t * x, t + 1.0, ng.sigmoid(y) * t]
    joined = ng.concatenate(pieces, axis=1)
    uneven = ng.concatenate([x, ng.exp(y)[:, :2]], axis=1)
    prog = to_program(Graph([x, y], [joined, uneven]), 2)
    (one,) = [k for k in prog.schedule if any(prog.buffers[s.buffer].name == "out0" for st in k.stages
                                                for s in st.stores)]
    assert tuple(one.outer) == (ng.Dim("N"), 3) and [len(st.stores) for st in one.stages] == [3]
    assert not any(i.op == "load" and i.attr("masked") for st in one.stages for i in st.body)
    assert sum(i.op == "tanh" for st in one.stages for i in st.body) == 1
    X, Y = RNG.standard_normal((4, 3)).astype(np.float32), RNG.standard_normal((4, 3)).astype(np.float32)
    got = helpers.compile([x, y], [joined, uneven], target=target)(X, Y)
    T = np.tanh(X) * Y
    want = [np.concatenate([T * X, T + 1, T / (1 + np.exp(-Y))], 1), np.concatenate([X, np.exp(Y)[:, :2]], 1)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("also_returned", [False, True])
def test_an_update_of_a_product_summed_over_its_batch_is_that_gemms_epilogue(also_returned):
    """W - 0.1 * sum_t X[t]ᵀ·D[t] (a weight gradient over every step of a scan): one GEMM
    of depth T*N that writes W's update, the SGD step its epilogue, no temp of W's shape;
    a gradient also returned is stored by the same epilogue."""
    X = ng.placeholder(("T", "N", 3), name="X")
    D = ng.placeholder(("T", "N", 5), name="D")
    W = ng.parameter(RNG.standard_normal((3, 5)).astype(np.float32), name="W")
    g = ng.sum(ng.matmul(ng.transpose(X, (0, 2, 1)), D), axis=0)
    feeds = [RNG.standard_normal(s).astype(np.float32) for s in ((4, 2, 3), (4, 2, 5))]
    progs = check([X, D], [g] if also_returned else [], feeds, updates=[(W, W - 0.1 * g)])
    prog = progs[2]
    (kern,) = [k for k in prog.schedule if isinstance(k, MatmulKernel)]
    assert prog.buffers[kern.out].name == ("out0" if also_returned else "W_new")
    assert [str(s) for s in kern.k] == ["T", "N"]
    assert {prog.buffers[s.buffer].name for s in kern.epilogue.stores} == (
        {"out0", "W_new"} if also_returned else {"W_new"})
    assert not [b.name for b in prog.buffers.values() if b.kind == "temp"]
