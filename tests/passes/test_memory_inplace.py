"""A loop's per-step result written over the per-step input it consumed
(passes/memory_inplace.py): the memory plan gives both stacks one slot only when
nothing reads the input after the loop and each element of the input is read
before it is overwritten; values checked on every backend (a wrong share shows as a
wrong value)."""
from __future__ import annotations

import numpy as np
import pytest

import helpers
import nngraph as ng
from nngraph.graph import Graph
from passes.lowering import to_program
from passes.loop import all_loops

RNG = np.random.default_rng(7)


def _loop_over(step, read_after=False):
    """(graph, its inputs) of a scan over xs = exp(x), its ys summed: both stacks temps."""
    x = ng.placeholder(("T", "N", 4), name="x")
    xs = ng.exp(x * 0.5)
    c0 = ng.broadcast_to(ng.constant(np.zeros((1, 4), np.float32)), (x.shape[1], 4))
    c, ys = ng.scan(step, c0, xs)
    # (a product reads xs's buffer after the loop; a sum would compute exp(x) again)
    after = [ng.matmul(xs, ng.constant(np.ones((4, 2), np.float32)))] if read_after else []
    outs = [c, ng.sum(ys * ys, axis=0)] + after
    return Graph([x], outs), [x]


def _shared(graph):
    """Pairs (ys stack, xs stack) of the loop that share a plan slot."""
    prog = to_program(graph, 2)
    (loop,) = list(all_loops(prog.schedule))
    written = set().union(*[k.writes() for k in loop.body])
    outs = [s.stacked for s in loop.slices if s.step in written]
    ins = [s.stacked for s in loop.slices if s.step not in written]
    pairs = [(y, x) for y in outs for x in ins if prog.plan.get(x, -1) == prog.plan.get(y, -2)]
    return pairs, loop.notes.get("in place", [])


def _values_agree(graph, inputs, target):
    shape = tuple(d if isinstance(d, int) else 3 for d in inputs[0].shape)    # T = 5 or static
    X = np.random.default_rng(3).standard_normal((5,) + shape[1:]).astype(np.float32)
    want = helpers.compile(inputs, list(graph.outputs), target="oracle")(X)   # no memory plan
    got = helpers.compile(inputs, list(graph.outputs), target=target)(X)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def _pointwise(c, x_t):
    return c + x_t, ng.tanh(x_t) * (c + 1.0)


def _halves_swapped(c, x_t):
    # y_t[:, :2] = x_t[:, 2:] and y_t[:, 2:] = x_t[:, :2]: each point stores one
    # element before another piece reads it
    return c + x_t, ng.concatenate([x_t[:, 2:] * 2.0, x_t[:, :2] * 3.0], axis=1)


def _transposed(c, x_t):
    return c + x_t, ng.transpose(ng.reshape(x_t, (-1, 2, 2)), (0, 2, 1)).reshape((-1, 4))


def test_a_result_computed_element_by_element_from_the_input_is_written_over_it(target):
    graph, inputs = _loop_over(_pointwise)
    pairs, notes = _shared(graph)
    assert len(pairs) == 1 and len(notes) == 1 and " over " in notes[0]
    _values_agree(graph, inputs, target)


@pytest.mark.parametrize("step, read_after", [(_pointwise, True), (_halves_swapped, False),
                                              (_transposed, False)])
def test_no_share_when_the_input_is_read_later_or_at_other_elements(target, step, read_after):
    graph, inputs = _loop_over(step, read_after)
    assert _shared(graph) == ([], [])
    _values_agree(graph, inputs, target)


# ---------------------------------------------------------------- the body reads X another way
# Each step may write its result over the slice of X it consumed only when nothing in
# the body reads X but through that slice: a body that also reads X whole (closed
# over), or another slice of it (a gather of X[t - 1]), would read slices already
# overwritten. The values are compared with the reference first: a wrong share shows
# as a wrong value.

def _loop_reading_x_again(how: str):
    x = ng.placeholder((5, 3, 4), name="x")      # static sizes: slices of the time axis, a reshape
    # a product: fusion does not compute it again for another reader, so all read one buffer
    xs = ng.matmul(x, ng.constant(RNG.standard_normal((4, 4)).astype(np.float32)))
    c0 = ng.broadcast_to(ng.constant(np.zeros((1, 4), np.float32)), (x.shape[1], 4))
    extra = []
    if how == "closed over":
        # rows of 12: a product of the carry's first 5 values and all of X, in a kernel of
        # its own before the pointwise one that writes y_t
        x = ng.placeholder((5, 12), name="x")
        xs = ng.matmul(x, ng.constant(RNG.standard_normal((12, 12)).astype(np.float32)))

        def step(c, x_t):
            whole = ng.matmul(ng.sigmoid(c[:5]), xs)                       # [12]
            return c + x_t, ng.tanh(x_t) * (c + 1.0) + whole
        c, ys = ng.scan(step, ng.constant(np.zeros(12, np.float32)), xs)
    elif how == "previous slice":
        def step(carry, x_t):
            # X[t - 1] (X[0] at step 0) gathered with a counter carried along
            c, t = carry
            before = ng.take(xs, ng.maximum(t - 1, 0), axis=0)
            return (c + x_t, t + 1), ng.tanh(x_t) * (c + 1.0) + before
        (c, _), ys = ng.scan(step, (c0, ng.constant(np.int32(0))), xs)
    elif how == "slices as inputs":
        def step(c, xt):
            x_t, x_next = xt
            return c + x_t, ng.tanh(x_t) * (c + 1.0) + x_next
        c, ys = ng.scan(step, c0, (xs[:-1], xs[1:]))
    elif how == "returned":
        c, ys = ng.scan(_pointwise, c0, xs)
        extra = [xs]
    outs = [c, ng.sum(ys * ys, axis=0)] + extra
    return Graph([x], outs), [x]


@pytest.mark.parametrize("how", ["closed over", "previous slice", "returned"])
def test_no_share_when_the_body_reads_the_input_other_than_through_its_step(target, how):
    graph, inputs = _loop_reading_x_again(how)
    _values_agree(graph, inputs, target)
    assert _shared(graph) == ([], [])


def test_slices_of_one_input_as_two_per_step_inputs_agree(target):
    # X[t] and X[t + 1] as two per-step inputs (copies of X's slices today: sharing one
    # of them with the result is sound, and the values say so)
    graph, inputs = _loop_reading_x_again("slices as inputs")
    _values_agree(graph, inputs, target)
