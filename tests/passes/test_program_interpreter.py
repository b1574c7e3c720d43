"""Differential: every graph gives the same values through the Program (lowered at
opt_level 0 and 2, run by the NumPy Program interpreter with its memory plan) as
through the graph interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import nngraph as ng
from nngraph.errors import VerifyError
from nngraph.graph import Graph
from nngraph.interpreter import bind_dims, evaluate
from passes.lowering import to_program
from passes.program import format_program, instr
from passes.program_interpreter import _eval_body, run_program

RNG = np.random.default_rng(0)


def _rand(shape, dtype="float32"):
    if dtype.startswith("int"):
        return RNG.integers(0, 5, shape).astype(dtype)
    return (RNG.standard_normal(shape) + 0.1).astype(dtype)


def P(shape, name):
    return ng.parameter(_rand(shape), name=name)


def check(inputs, outputs, feeds, updates=(), levels=(0, 2), rtol=2e-5, atol=2e-6):
    g = Graph(list(inputs), list(outputs), list(updates))
    env = bind_dims(g.inputs, feeds)
    ref = evaluate(list(outputs) + [v for _, v in updates], dict(zip(g.inputs, feeds)), env)
    progs = {}
    for level in levels:
        prog = to_program(g, level)
        format_program(prog)  # every program prints
        outs, new = run_program(prog, feeds, [p.value for p in g.params()], env)
        for got, want in zip(outs + new, ref):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"opt_level {level}")
        progs[level] = prog
    return progs


def test_elementwise_with_broadcasting_and_dtypes():
    x = ng.placeholder(("N", 3, 4), name="x")
    b = P((4,), "b")
    c = P((3, 1), "c")
    i = ng.placeholder((4,), "int32", name="i")
    y = ng.tanh(x * b + c) - ng.sigmoid(x) / (ng.exp(c) + 1.0)
    z = ng.where(x > 0.5, ng.cast(i, "float32") * x, ng.softplus(x)) ** 2.0
    m = ng.maximum(ng.abs(x), ng.minimum(y, 0.3)) + ng.sqrt(ng.abs(x) + 1.0)
    k = (i * 3 + 1) + ng.cast(ng.logical_and(i > 1, i <= 3), "int32") - ng.cast(ng.logical_not(i > 2), "int32")
    check([x, i], [y, z, m, k], [_rand((2, 3, 4)), _rand((4,), "int32")])


@pytest.mark.parametrize("axis,keep", [(None, False), (0, True), (1, False), ((0, 2), True), (-1, False)])
def test_reductions_with_keepdims(axis, keep):
    x = ng.placeholder((3, 4, 5), name="x")
    ys = [ng.sum(x * 2.0, axis, keep), ng.max(ng.exp(x), axis, keep), ng.min(x, axis, keep),
          ng.mean(x, axis, keep)]
    if axis is not None and not isinstance(axis, tuple):
        ys.append(ng.argmax(x, axis, keep))
    check([x], ys, [_rand((3, 4, 5))])


def test_reduction_epilogue_and_reuse_of_a_row_result():
    x = ng.placeholder(("N", 6), name="x")
    s = ng.sum(x, 1, keepdims=True)
    y = x / s + ng.max(x, 0)
    check([x], [y, ng.sum(y * y)], [_rand((5, 6))])


def test_movement_ops():
    x = ng.placeholder((2, 3, 4), name="x")
    w = P((4, 3), "w")
    outs = [
        ng.reshape(x, (6, 4)) + 1.0,
        ng.reshape(ng.exp(x), (4, 6)),
        ng.reshape(ng.transpose(x, (2, 0, 1)), (4, 3, 2)) * 2.0,
        ng.transpose(x, (1, 2, 0)),
        ng.broadcast_to(ng.sum(x, 0), (5, 3, 4)),
        x[:, 1:, ::2] * 3.0,
        x[1, :, 1:3],
        ng.pad(ng.tanh(x), ((1, 0), (0, 2), (1, 1)), value=-1.5),
        ng.concatenate([x, ng.exp(x), x * 2.0], axis=1),
        ng.stack([x, x + 1.0], axis=0),
        ng.squeeze(ng.expand_dims(x, 1), 1) + ng.transpose(w),
        ng.flatten(x),
    ]
    check([x], outs, [_rand((2, 3, 4))])


def test_pad_interior_and_slice_steps():
    from nngraph.ops.movement import pad_general, slice_
    x = ng.placeholder((3, 4), name="x")
    y = pad_general(x * 2.0, ((1, 2, 1), (0, 1, 2)), 0.5)
    z = slice_(y, ((1, 8, 3), (0, 11, 2)))
    check([x], [y, z], [_rand((3, 4))])


def test_symbolic_reshape():
    x = ng.placeholder(("N", 2, 3), name="x")
    y = ng.reshape(x, ("N", 6)) * 2.0
    z = ng.reshape(ng.exp(y), ("N", 3, 2))
    check([x], [y, z], [_rand((4, 2, 3))])


@pytest.mark.parametrize("case", ["plain", "transposed", "batched", "broadcast_batch", "vector", "int"])
def test_matmul(case):
    if case == "plain":
        a, b = ng.placeholder((3, 4), name="a"), P((4, 5), "b")
        outs, feeds = [ng.relu(a @ b + 1.0)], [_rand((3, 4))]
    elif case == "transposed":
        a, b = ng.placeholder((4, 3), name="a"), P((5, 4), "b")
        outs, feeds = [a.T @ b.T, ng.exp(a.T) @ b.T], [_rand((4, 3))]
    elif case == "batched":
        a, b = ng.placeholder(("B", 3, 4), name="a"), ng.placeholder(("B", 4, 2), name="b2")
        outs, feeds = [ng.matmul(a, b) * 2.0], [_rand((2, 3, 4)), _rand((2, 4, 2))]
        check([a, b], outs, feeds)
        return
    elif case == "broadcast_batch":
        a, b = ng.placeholder((2, 1, 3, 4), name="a"), P((5, 4, 2), "b")
        outs, feeds = [ng.matmul(a, b), ng.matmul(ng.transpose(a, (0, 1, 3, 2)), ng.sum(b, 0)[:3])], [_rand((2, 1, 3, 4))]
    elif case == "vector":
        a, b = ng.placeholder((4,), name="a"), P((4, 5), "b")
        outs, feeds = [ng.matmul(a, b), ng.dot(b.T, a)], [_rand((4,))]
    else:
        a = ng.placeholder((3, 4), "int32", name="a")
        b = ng.constant(np.arange(8, dtype=np.int32).reshape(4, 2))
        outs, feeds = [ng.matmul(a, b), ng.matmul(ng.cast(a, "float32"), P((4, 2), "f"))], [_rand((3, 4), "int32")]
    check([a], outs, feeds)


def test_softmax_cross_entropy_forward_and_backward():
    x = ng.placeholder(("N", 7), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    loss = ng.cross_entropy(x * 3.0, y)
    g = ng.grad(loss, x)
    sm = ng.softmax(x, -1)
    lsm = ng.log_softmax(x, 0)
    check([x, y], [loss, g, sm, lsm, ng.logsumexp(x, 1)], [_rand((6, 7)), RNG.integers(0, 7, 6).astype(np.int32)])


def test_mlp_training_step_with_updates():
    x = ng.placeholder(("N", 12), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W1, b1, W2, b2 = P((12, 8), "W1"), P((8,), "b1"), P((8, 3), "W2"), P((3,), "b2")
    h = ng.relu(x @ W1 + b1)
    loss = ng.cross_entropy(h @ W2 + b2, y)
    ps = [W1, b1, W2, b2]
    gs = ng.grad(loss, ps)
    ups = [(p, p - 0.1 * gp) for p, gp in zip(ps, gs)]
    check([x, y], [loss], [_rand((5, 12)), RNG.integers(0, 3, 5).astype(np.int32)], ups)


def test_output_that_is_a_source_or_a_constant_is_copied():
    x = ng.placeholder((3,), name="x")
    p = P((3,), "p")
    progs = check([x], [x, p, ng.constant(2.5), ng.constant(np.arange(3.0, dtype=np.float32))], [_rand((3,))],
                  updates=[(p, p)])
    prog = progs[2]
    assert all(prog.buffers[b].kind == "output" for b in prog.outputs)


def test_same_value_returned_twice_and_as_an_update():
    x = ng.placeholder((3,), name="x")
    p = P((3,), "p")
    v = p * x
    check([x], [v, v], [_rand((3,))], updates=[(p, v)])


def test_iota_numel_one_hot():
    x = ng.placeholder(("N", 4), name="x")
    lab = ng.placeholder(("N",), "int32", name="lab")
    oh = ng.one_hot(lab, 4)
    check([x, lab], [oh * x, ng.mean(x, 0), ng.iota((2, 3), 1, "int64")],
          [_rand((3, 4)), RNG.integers(0, 4, 3).astype(np.int32)])


def test_dropout_is_deterministic_and_matches_the_oracle():
    x = ng.placeholder((64, 16), name="x")
    y = ng.dropout(ng.exp(x), 0.5, seed=7)
    progs = check([x], [y], [_rand((64, 16))])
    # same program, same counter: the same mask twice
    g = Graph([x], [y])
    prog = to_program(g, 2)
    feeds = [_rand((64, 16))]
    a = run_program(prog, feeds, [p.value for p in g.params()], {})[0][0]
    b = run_program(prog, feeds, [p.value for p in g.params()], {})[0][0]
    np.testing.assert_array_equal(a, b)
    assert 0.3 < np.mean(a == 0) < 0.7
    assert progs


def test_check_numerics_in_the_interpreter_names_the_buffer():
    x = ng.placeholder((3,), name="x")
    g = Graph([x], [ng.log(x)])
    prog = to_program(g, 2)
    with pytest.raises(ng.NumericsError, match="non-finite"):
        run_program(prog, [np.array([-1.0, 1, 2], np.float32)], [], {}, check_numerics=True)


@pytest.mark.parametrize("op", ["fmod", "trunc_div"])
@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("divisor", [0, -1])
def test_integer_division_by_an_unsafe_divisor_is_a_lowering_bug(op, dtype, divisor):
    """srem/sdiv trap on 0 and -1 in machine code; the interpreter refuses them, naming the op."""
    body = [instr("const", (), dtype, value=7), instr("const", (), dtype, value=divisor), instr(op, (0, 1), dtype)]
    with pytest.raises(VerifyError, match=f"integer {op} \\({dtype}\\) by a divisor of {divisor}"):
        _eval_body(body, (), 0, [], {}, {})


@pytest.mark.parametrize("op,want", [("fmod", -1), ("trunc_div", -3)])
def test_integer_division_by_a_safe_divisor_and_float_by_zero_evaluate(op, want):
    body = [instr("const", (), "int32", value=-7), instr("const", (), "int32", value=2), instr(op, (0, 1), "int32")]
    assert _eval_body(body, (), 0, [], {}, {})[-1] == want
    body = [instr("const", (), "float32", value=1.0), instr("const", (), "float32", value=0.0),
            instr("fmod", (0, 1), "float32")]
    assert np.isnan(_eval_body(body, (), 0, [], {}, {})[-1])
