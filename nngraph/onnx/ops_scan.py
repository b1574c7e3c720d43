"""ONNX Scan: an ng.scan whose step is the imported body graph.

The body is imported once, inside ng.scan's tracing of the step, on the placeholders
that stand for the carried state and for one slice of each scan input; values of the
enclosing graph it reads become closed-over inputs of the loop (nngraph/scan_build.py),
so one import serves every sequence length (a dynamic time axis stays dynamic) and
ng.grad differentiates the loop as a reverse scan. Scan axes other than 0 are moved to
the front, and reverse directions flip one input or output (a gather of the indices
-1, -2, ...), since ng.scan's own `reverse` turns all of them at once.

Opset 8's Scan runs its body per batch entry (axis 0 of every input is the batch,
axis 1 the time of the scan inputs): an outer ng.scan over the batch holds the scan
over time.
"""
from __future__ import annotations

import numpy as np

from ..ops import elementwise as ew
from ..ops import gather
from ..ops import movement as mv
from ..scan_build import scan
from ..types import Dim
from .registry import converter


def flip_front(x):
    """x reversed along axis 0 (a static or dynamic length)."""
    ids = ew.sub(ew.constant(np.asarray(-1, np.int64)), gather.arange(x.shape[0], "int64"))
    return gather.take(x, ids, 0)


def _axes(ctx, name: str, ranks: list) -> list:
    """The attribute's axes (default 0), normalised against each tensor's rank."""
    given = ctx.attr(name)
    if given is None:
        return [0] * len(ranks)
    if len(given) != len(ranks):
        raise ctx.error(f"attribute {name}={list(given)} needs {len(ranks)} entries")
    out = []
    for a, r in zip(given, ranks):
        if not -r <= a < r:
            raise ctx.error(f"attribute {name}={list(given)}: axis {a} is out of range for rank {r}")
        out.append(int(a) % r)
    return out


def _directions(ctx, name: str, n: int) -> list:
    given = ctx.attr(name)
    if given is None:
        return [0] * n
    if len(given) != n or any(d not in (0, 1) for d in given):
        raise ctx.error(f"attribute {name}={list(given)} needs {n} entries, each 0 (forward) or 1 (reverse)")
    return [int(d) for d in given]


def _to_front(x, axis: int):
    return x if axis == 0 else mv.transpose(x, [axis] + [a for a in range(x.ndim) if a != axis])


def _from_front(y, axis: int):
    if axis == 0:
        return y
    perm = list(range(1, y.ndim))
    perm.insert(axis, 0)
    return mv.transpose(y, perm)


def _run_body(ctx, states: list, xs: list, n_state: int):
    """(final states, stacked scan outputs) of the body over xs' axis 0."""
    def step(carry, x_t):
        outs = ctx.subgraph("body", list(carry) + list(x_t))
        if len(outs) < n_state:
            raise ctx.error(f"its body returns {len(outs)} values, fewer than the {n_state} states")
        return (tuple(ctx.tensor(o, "a state the body returns") for o in outs[:n_state]),
                tuple(ctx.tensor(o, "a scan output of the body") for o in outs[n_state:]))
    final, ys = scan(step, tuple(states), tuple(xs))
    return list(final), list(ys)


@converter("Scan", 9, attrs=("body", "num_scan_inputs", "scan_input_axes", "scan_input_directions",
                              "scan_output_axes", "scan_output_directions"))
def _scan(ctx):
    m = int(ctx.attr("num_scan_inputs"))
    n_in = len(ctx.node.input)
    n_state = n_in - m
    if m < 1 or n_state < 0:
        raise ctx.error(f"num_scan_inputs={m} does not fit its {n_in} inputs")
    states = [ctx.t(i) for i in range(n_state)]
    xs = [ctx.t(i) for i in range(n_state, n_in)]
    in_axes = _axes(ctx, "scan_input_axes", [x.ndim for x in xs])
    xs = [_to_front(x, a) for x, a in zip(xs, in_axes)]
    xs = [flip_front(x) if d else x for x, d in zip(xs, _directions(ctx, "scan_input_directions", m))]
    final, ys = _run_body(ctx, states, xs, n_state)
    ys = [flip_front(y) if d else y for y, d in zip(ys, _directions(ctx, "scan_output_directions", len(ys)))]
    out_axes = _axes(ctx, "scan_output_axes", [y.ndim for y in ys])
    return final + [_from_front(y, a) for y, a in zip(ys, out_axes)]


@converter("Scan", 8, 8, attrs=("body", "num_scan_inputs", "directions"))
def _scan8(ctx):
    """Opset 8: batch on axis 0, time on axis 1 of the scan inputs; input 0 is the
    optional sequence_lens, accepted when every entry is the whole sequence."""
    m = int(ctx.attr("num_scan_inputs"))
    n_in = len(ctx.node.input)
    n_state = n_in - 1 - m
    if m < 1 or n_state < 0:
        raise ctx.error(f"num_scan_inputs={m} does not fit its {n_in} inputs")
    states = [ctx.t(i) for i in range(1, 1 + n_state)]
    xs = [ctx.t(i) for i in range(1 + n_state, n_in)]
    if any(x.ndim < 2 for x in xs):
        raise ctx.error("opset 8 scan inputs need a batch axis and a time axis")
    if ctx.has(0):
        steps = xs[0].shape[1]
        lens = ctx.const(0, "sequence_lens")
        if isinstance(steps, Dim) or not np.all(lens == steps):
            raise ctx.error(f"sequence_lens {lens.tolist()} other than the whole sequence ({steps}) are not supported")
    dirs = _directions(ctx, "directions", m)

    def per_batch(_, item):
        st, seqs = list(item[:n_state]), list(item[n_state:])
        seqs = [flip_front(x) if d else x for x, d in zip(seqs, dirs)]
        final, ys = _run_body(ctx, st, seqs, n_state)
        return (), tuple(final) + tuple(ys)

    _, outs = scan(per_batch, (), tuple(states + xs))
    return list(outs)
