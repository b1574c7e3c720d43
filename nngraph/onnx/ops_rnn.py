"""ONNX RNN, GRU and LSTM: one cell function per op, run over the sequence in two ways.

A static sequence length is unrolled: T copies of the cell from existing ops, which
every backend compiles and which differentiates like any graph. A dynamic one (a
symbolic time axis) is an ng.scan over the time axis, the cell its step, so one
import serves every length on every target, and ng.grad differentiates it as a reverse scan.
Batch may be dynamic either way.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..scan_build import scan
from ..types import Dim
from .registry import converter

_COMMON = ("activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout")
_ACTIVATIONS = {"Sigmoid": ew.sigmoid, "Tanh": ew.tanh, "Relu": ew.relu}


def _activations(ctx, defaults: list, directions: int) -> list:
    """One list of activation functions per direction (names refused unless known)."""
    if ctx.attr("activation_alpha") is not None or ctx.attr("activation_beta") is not None:
        raise ctx.error("attributes activation_alpha/activation_beta are not supported")
    names = ctx.attr("activations") or defaults * directions
    if len(names) != len(defaults) * directions:
        raise ctx.error(f"activations={names} needs {len(defaults)} names per direction")
    out = []
    for n in names:
        if n not in _ACTIVATIONS:
            raise ctx.error(f"activation {n!r} is not supported (supported: {', '.join(_ACTIVATIONS)})")
        out.append(_ACTIVATIONS[n])
    k = len(defaults)
    return [out[i * k:(i + 1) * k] for i in range(directions)]


def _setup(ctx, gates: int):
    """(x as [T, B, I], directions, H, layout), sequence_lens checked to be the whole sequence."""
    layout = ctx.refuse_unless("layout", (0, 1), 0)
    direction = ctx.refuse_unless("direction", ("forward", "reverse", "bidirectional"), "forward")
    x = ctx.t(0)
    if layout:
        x = mv.transpose(x, (1, 0, 2))
    steps = x.shape[0]
    if ctx.has(4):
        if isinstance(steps, Dim):
            raise ctx.error(f"sequence_lens with a dynamic sequence length (input {x.type}) is not supported")
        lens = ctx.const(4, "sequence_lens")
        if not np.all(lens == steps):
            raise ctx.error(f"sequence_lens {lens.tolist()} shorter than the sequence ({steps}) are not supported")
    dirs = {"forward": ["forward"], "reverse": ["reverse"], "bidirectional": ["forward", "reverse"]}[direction]
    hidden = int(ctx.attr("hidden_size"))
    return x, dirs, hidden, layout


def _pick(t, d: int):
    """Direction d of a [D, ...] weight."""
    return mv.reshape(mv.slice_(t, [(d, d + 1, 1)] + [(0, s, 1) for s in t.shape[1:]]), tuple(t.shape[1:]))


def _split(t, parts: int):
    """The gate blocks of the last axis."""
    n = t.shape[-1] // parts
    full = [(0, s, 1) for s in t.shape[:-1]]
    return [mv.slice_(t, full + [(i * n, (i + 1) * n, 1)]) for i in range(parts)]


def _initial_state(ctx, d: int, x, hidden: int, n_states: int) -> tuple:
    """(initial_h,) or (initial_h, initial_c) of direction d: inputs 5 and 6, zeros when
    left out (x: the [T, B, I] sequence)."""
    out = []
    for index in (5, 6)[:n_states]:
        if ctx.has(index):
            out.append(_pick(ctx.t(index), d))
        else:
            out.append(mv.broadcast_to(np.zeros((), np.dtype(x.dtype)), (x.shape[1], hidden)))
    return tuple(out)


def _clip(ctx, v):
    c = ctx.attr("clip")
    return v if c is None else F.clip(v, -float(c), float(c))


def _unrolled(x, state, cell, reverse: bool):
    """(final state, [T, B, H] outputs) of `cell(x_t, state) -> (state, h)` over a static T."""
    full = [(0, s, 1) for s in x.shape]
    steps = [mv.reshape(mv.slice_(x, [(t, t + 1, 1)] + full[1:]), tuple(x.shape[1:])) for t in range(x.shape[0])]
    outs = {}
    for t in (reversed if reverse else iter)(range(len(steps))):
        state, outs[t] = cell(steps[t], state)
    return state, mv.stack([outs[t] for t in range(len(steps))], 0)


def _run(ctx, x, dirs, hidden, layout, n_states, cell):
    """`cell(d, x_t, state) -> (state, h)` over the sequence per direction, unrolled
    (static T) or scanned (dynamic T); return Y, Y_h (and Y_c)."""
    ys, finals = [], []
    for d, kind in enumerate(dirs):
        init = _initial_state(ctx, d, x, hidden, n_states)
        step = (lambda d: lambda x_t, state: cell(d, x_t, state))(d)
        if isinstance(x.shape[0], Dim):
            state, y = scan(lambda carry, x_t: step(x_t, tuple(carry)), init, x, reverse=kind == "reverse")
        else:
            state, y = _unrolled(x, init, step, kind == "reverse")
        ys.append(y)  # [T, B, H]
        finals.append(tuple(state))
    y = mv.stack(ys, 1)  # [T, D, B, H]
    if layout:
        y = mv.transpose(y, (2, 0, 1, 3))
    results = [y] + [mv.stack([f[k] for f in finals], 0) for k in range(len(finals[0]))]
    if layout:
        results[1:] = [mv.transpose(r, (1, 0, 2)) for r in results[1:]]
    return results[:max(ctx.n_outputs, 1)]


def _weights(ctx, d, gates, hidden):
    w, r = _pick(ctx.t(1), d), _pick(ctx.t(2), d)
    if ctx.has(3):
        b = _pick(ctx.t(3), d)
        wb, rb = _split(b, 2)
    else:
        wb = rb = None
    return mv.transpose(w), mv.transpose(r), wb, rb


def _affine(x, w, b):
    y = x @ w
    return y if b is None else ew.add(y, b)


@converter("RNN", 7, attrs=_COMMON)
def _rnn(ctx):
    x, dirs, hidden, layout = _setup(ctx, 1)
    acts = _activations(ctx, ["Tanh"], len(dirs))

    def cell(d, x, state):
        w, r, wb, rb = _weights(ctx, d, 1, hidden)
        (h,) = state
        h = acts[d][0](_clip(ctx, ew.add(_affine(x, w, wb), _affine(h, r, rb))))
        return (h,), h
    return _run(ctx, x, dirs, hidden, layout, 1, cell)


@converter("GRU", 7, attrs=_COMMON + ("linear_before_reset",))
def _gru(ctx):
    x, dirs, hidden, layout = _setup(ctx, 3)
    acts = _activations(ctx, ["Sigmoid", "Tanh"], len(dirs))
    before = bool(ctx.attr("linear_before_reset", 0))

    def cell(d, x, state):
        w, r, wb, rb = _weights(ctx, d, 3, hidden)
        f, g = acts[d]
        (h,) = state
        (wz, wr, wh), (rz, rr, rh) = _split(w, 3), _split(r, 3)
        (bz, br, bh), (cz, cr, ch) = (_split(wb, 3), _split(rb, 3)) if wb is not None else ([None] * 3, [None] * 3)
        z = f(_clip(ctx, ew.add(_affine(x, wz, bz), _affine(h, rz, cz))))
        rt = f(_clip(ctx, ew.add(_affine(x, wr, br), _affine(h, rr, cr))))
        inner = ew.mul(rt, _affine(h, rh, ch)) if before else _affine(ew.mul(rt, h), rh, ch)
        n = g(_clip(ctx, ew.add(_affine(x, wh, bh), inner)))
        h = ew.add(ew.mul(ew.sub(1.0, z), n), ew.mul(z, h))
        return (h,), h
    return _run(ctx, x, dirs, hidden, layout, 1, cell)


@converter("LSTM", 7, attrs=_COMMON + ("input_forget",))
def _lstm(ctx):
    ctx.refuse_unless("input_forget", (0,), 0)
    x, dirs, hidden, layout = _setup(ctx, 4)
    acts = _activations(ctx, ["Sigmoid", "Tanh", "Tanh"], len(dirs))

    def cell(d, x, state):
        w, r, wb, rb = _weights(ctx, d, 4, hidden)
        f, g, hact = acts[d]
        h, c = state
        pre = _split(ew.add(_affine(x, w, wb), _affine(h, r, rb)), 4)  # gates i, o, f, c
        peep = _split(_pick(ctx.t(7), d), 3) if ctx.has(7) else None
        i_pre, o_pre, f_pre, c_pre = pre
        if peep is not None:
            i_pre, f_pre = ew.add(i_pre, ew.mul(peep[0], c)), ew.add(f_pre, ew.mul(peep[2], c))
        i, fg, cc = f(_clip(ctx, i_pre)), f(_clip(ctx, f_pre)), g(_clip(ctx, c_pre))
        c = ew.add(ew.mul(fg, c), ew.mul(i, cc))
        if peep is not None:
            o_pre = ew.add(o_pre, ew.mul(peep[1], c))
        h = ew.mul(f(_clip(ctx, o_pre)), hact(c))
        return (h, c), h
    return _run(ctx, x, dirs, hidden, layout, 2, cell)
