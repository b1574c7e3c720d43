"""A loop's carry buffers sharing memory (passes/memory_carries.py): a new value
written over the state it replaces when every read of the state comes first (or in
the same kernel, element by element from it), and an initial value that dies at the
loop's start made in the state's own memory; the copies between one memory and
itself are then skipped (passes/loop.py). Values are checked on every backend, with
lengths from 0 on (a wrong share shows as a wrong value from step 2 on)."""
from __future__ import annotations

import numpy as np
import pytest

import helpers
import nngraph as ng
from nngraph.graph import Graph
from passes.loop import all_loops, copies_after_step, copies_before_loop, same_memory
from passes.lowering import to_program
from passes.program import format_program

RNG = np.random.default_rng(11)
W = RNG.standard_normal((4, 8)).astype(np.float32) * 0.5


def _gated(c, x_t):
    # the product reads c (its own kernel), then the pointwise kernel writes the new c
    z = ng.matmul(c, ng.constant(W))
    new = ng.tanh(z[:, :4] + x_t) * ng.sigmoid(z[:, 4:])
    return new, new * 2.0


def _pointwise(c, x_t):
    # one kernel reads c at each element and writes the new c there from it
    return c * 0.5 + ng.tanh(x_t), c * 2.0


def _halves_swapped(c, x_t):
    # one kernel writes the new c at elements whose old value other points read
    return ng.concatenate([c[:, 2:], c[:, :2]], axis=1) + x_t, c * 2.0


def _not_from_the_state(c, x_t):
    # one kernel reads c (for y) and writes the new c from x_t alone: the store of the
    # new value at an element is not ordered after the load of the old one there
    return ng.tanh(x_t), c + x_t


def _written_first(c, x_t):
    # the new c is written (a product's epilogue) before a later product reads c
    new = ng.tanh(ng.matmul(x_t, ng.constant(W[:, :4])))
    return new, ng.matmul(c, ng.constant(W[:, 4:]))


def _loop(step, init="zeros", read_init_after=False):
    """(graph, inputs) of a scan of `step` over xs = exp(x / 2) (its final carry and ys
    summed), from c0: zeros
    broadcast to the batch, or a product of x[0] (a temp only the loop reads, unless
    read_init_after: a product after the loop reads it too)."""
    x = ng.placeholder(("T", "N", 4), name="x")
    x0 = ng.placeholder(("N", 4), name="x0")
    xs = ng.exp(x * 0.5)
    if init == "zeros":
        c0 = ng.broadcast_to(ng.constant(np.zeros((1, 4), np.float32)), (x.shape[1], 4))
    else:
        c0 = ng.matmul(x0, ng.constant(RNG.standard_normal((4, 4)).astype(np.float32)))
    c, ys = ng.scan(step, c0, xs)
    outs = [ng.sum(c * c, axis=1), ng.sum(ys * ys, axis=0)]      # c a temp, not the output
    if read_init_after:
        outs.append(ng.matmul(c0, ng.constant(np.ones((4, 2), np.float32))))
    return Graph([x, x0], outs), [x, x0]


def _carry(graph):
    prog = to_program(graph, 2)
    (loop,) = list(all_loops(prog.schedule))
    (carry,) = loop.carries
    return prog, loop, carry


def _values_agree(graph, inputs, target):
    want_fn = helpers.compile(inputs, list(graph.outputs), target="oracle")     # no memory plan
    got_fn = helpers.compile(inputs, list(graph.outputs), target=target)
    for length in (0, 1, 5):
        X = RNG.standard_normal((length, 3, 4)).astype(np.float32)
        X0 = RNG.standard_normal((3, 4)).astype(np.float32)
        for g, w in zip(got_fn(X, X0), want_fn(X, X0)):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("step", [_gated, _pointwise])
def test_the_new_carry_is_written_over_the_state_it_replaces(target, step):
    graph, inputs = _loop(step)
    prog, loop, c = _carry(graph)
    assert same_memory(prog, c.state, c.next) and copies_after_step(prog, loop) == []
    _values_agree(graph, inputs, target)


@pytest.mark.parametrize("step", [_halves_swapped, _not_from_the_state, _written_first])
def test_no_share_when_the_state_is_read_after_or_apart_from_the_new_value(target, step):
    graph, inputs = _loop(step)
    prog, loop, c = _carry(graph)
    assert not same_memory(prog, c.state, c.next) and copies_after_step(prog, loop) == [(c.state, c.next)]
    _values_agree(graph, inputs, target)


def test_an_initial_value_only_the_loop_reads_is_made_in_the_state_memory(target):
    graph, inputs = _loop(_pointwise, init="product")
    prog, loop, c = _carry(graph)
    assert same_memory(prog, c.state, c.init) and copies_before_loop(prog, loop) == []
    _values_agree(graph, inputs, target)


def test_an_initial_value_read_after_the_loop_keeps_its_memory(target):
    graph, inputs = _loop(_pointwise, init="product", read_init_after=True)
    prog, loop, c = _carry(graph)
    assert not same_memory(prog, c.state, c.init) and copies_before_loop(prog, loop) == [(c.state, c.init)]
    _values_agree(graph, inputs, target)


def test_one_initial_value_of_two_carries(target):
    x = ng.placeholder(("T", "N", 4), name="x")
    x0 = ng.placeholder(("N", 4), name="x0")
    c0 = ng.matmul(x0, ng.constant(W[:, :4]))
    (a, b), ys = ng.scan(lambda carry, x_t: ((carry[0] * 0.5 + x_t, carry[1] * carry[0] + 1.0), carry[1] * 2.0),
                         (c0, c0), ng.exp(x * 0.5))
    graph = Graph([x, x0], [ng.sum(a * b, axis=1), ng.sum(ys * ys, axis=0)])
    prog = to_program(graph, 2)
    (loop,) = list(all_loops(prog.schedule))
    assert len(copies_before_loop(prog, loop)) >= 1      # at most one state is the init's memory
    _values_agree(graph, [x, x0], target)


def test_the_dump_shows_the_copies_the_backends_skip():
    graph, _ = _loop(_pointwise, init="product")
    prog, _, c = _carry(graph)
    text = format_program(prog)
    name = lambda b: f"@{prog.buffers[b].name}"       # noqa: E731
    assert f"carry {name(c.state)} (from {name(c.init)}, one memory, no copy) <- {name(c.next)}: " \
           f"{name(c.next)} over {name(c.state)}, no copy" in text
    graph, _ = _loop(_halves_swapped, read_init_after=False)
    prog, _, c = _carry(graph)
    assert f"<- {name(c.next)} after each step" in format_program(prog)
