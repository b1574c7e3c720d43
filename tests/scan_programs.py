"""Hand-built Programs with a ScanLoop (passes/loop.py), for the Program interpreter,
the memory plan and both backends, with a NumPy oracle for each.

elman(): ys[t] = h_t = tanh(x_t @ Wx + h_{t-1} @ Wh + b), h_{-1} = h0; returns
(ys [T, N, H], h_T [N, H]). The time length T is a symbolic size; the input
projection x_t @ Wx runs inside the loop (the body reads the step slice of xs) or,
with hoisted=True, as ONE product over all steps before the loop (xs viewed as
[T*N, F]) whose per-step slices the body reads.
"""
from __future__ import annotations

import numpy as np

from nngraph.types import Dim
from passes.loop import Carry, ScanLoop, StepSlice
from passes.memory import plan_memory
from passes.program import Buffer, LoopKernel, MatmulKernel, Program, Stage, Store, instr

T, N = Dim("T"), Dim("N")


class _Prog:
    def __init__(self):
        self.buffers = {}
        self.inputs, self.params, self.outputs = [], [], []

    def buf(self, name, shape, kind="temp", dtype="float32", view_of=None):
        i = len(self.buffers)
        self.buffers[i] = Buffer(i, name, dtype, tuple(shape), kind, view_of=view_of)
        {"input": self.inputs, "param": self.params, "output": self.outputs}.get(kind, []).append(i)
        return i


def _tanh_sum_kernel(outer, loads, stores, bias=None):
    """out[i, j] = tanh(sum of loads[i, j] (+ bias[j])) stored to every buffer of `stores`."""
    body = [instr("idx", dtype="int64", axis=0), instr("idx", dtype="int64", axis=1)]
    acc = None
    for b in loads:
        body.append(instr("load", (0, 1), buffer=b))
        acc = len(body) - 1 if acc is None else _add(body, acc, len(body) - 1)
    if bias is not None:
        body.append(instr("load", (1,), buffer=bias))
        acc = _add(body, acc, len(body) - 1)
    body.append(instr("tanh", (acc,)))
    v = len(body) - 1
    return LoopKernel("k_tanh", tuple(outer), [Stage((), body, (), [Store(s, (0, 1), v) for s in stores])])


def _add(body, a, b):
    body.append(instr("add", (a, b)))
    return len(body) - 1


def _unary_kernel(op, outer, src, dst, scale=None):
    """dst[i, j] = op(src[i, j]) (op "mul": src * src; "half_sum": (src + src) * 0.5)."""
    body = [instr("idx", dtype="int64", axis=k) for k in range(len(outer))]
    ix = tuple(range(len(outer)))
    body.append(instr("load", ix, buffer=src))
    v = len(body) - 1
    body.append(instr("add" if op == "half_sum" else "mul", (v, v)))
    if op == "half_sum":
        body.append(instr("const", value=0.5))
        body.append(instr("mul", (len(body) - 2, len(body) - 1)))
    return LoopKernel(f"k_{op}", tuple(outer), [Stage((), body, (), [Store(dst, ix, len(body) - 1)])])


def elman(F=4, H=5, hoisted=False, reverse=False, planned=True, closed=False, dtype="float32"):
    """(Program, oracle(xs, h0, Wx, Wh, b) -> (ys, hT)). closed=True: the body reads a
    temp computed before the loop (b, as (b + b) * 0.5) and ends with two more
    kernels that store h_t * h_t into a third output [T, N, H] through a body temp,
    so a memory plan that let that temp take the closed-over one's slot breaks step 2."""
    p = _Prog()
    xs = p.buf("xs", (T, N, F), "input")
    h0 = p.buf("h0", (N, H), "input")
    Wx, Wh, bias = p.buf("Wx", (F, H), "param"), p.buf("Wh", (H, H), "param"), p.buf("b", (H,), "param")
    ys = p.buf("ys", (T, N, H), "output")
    hT = p.buf("hT", (N, H), "output")
    h_next = p.buf("h_next", (N, H))
    y_t = p.buf("y_t", (N, H), "step", view_of=ys)
    rec = p.buf("h_Wh", (N, H))
    schedule, body, slices = [], [], [StepSlice(ys, y_t)]
    if hoisted:
        xw = p.buf("xs_Wx", (T, N, H))
        schedule.append(MatmulKernel("k_xs_Wx", xs, Wx, xw, (T,), N, H, F, source="x_t @ Wx, all steps"))
        xw_t = p.buf("xw_t", (N, H), "step", view_of=xw)
        slices.append(StepSlice(xw, xw_t))
        proj = xw_t
    else:
        x_t = p.buf("x_t", (N, F), "step", view_of=xs)
        slices.append(StepSlice(xs, x_t))
        proj = p.buf("x_Wx", (N, H))
        body.append(MatmulKernel("k_x_Wx", x_t, Wx, proj, (), N, H, F))
    if closed:
        b2 = p.buf("b_again", (H,))
        schedule.insert(0, _unary_kernel("half_sum", (H,), bias, b2))
        bias = b2
    body.append(MatmulKernel("k_h_Wh", hT, Wh, rec, (), N, H, H))
    body.append(_tanh_sum_kernel((N, H), [proj, rec], [h_next, y_t], bias))
    if closed:
        sq, sqs = p.buf("h_sq", (N, H)), p.buf("ys_sq", (T, N, H), "output")
        sq_t = p.buf("sq_t", (N, H), "step", view_of=sqs)
        slices.append(StepSlice(sqs, sq_t))
        body.append(_unary_kernel("mul", (N, H), h_next, sq))
        body.append(_unary_kernel("half_sum", (N, H), sq, sq_t))
    schedule.append(ScanLoop("k_scan", T, body, (Carry(hT, h_next, h0),), tuple(slices), reverse,
                             source="elman"))
    prog = Program(p.buffers, schedule, p.inputs, p.params, p.outputs, [])
    if planned:
        prog.plan = plan_memory(prog)

    def oracle(xs_v, h0_v, Wx_v, Wh_v, b_v):
        h = h0_v.astype(np.float64)
        out = np.zeros(xs_v.shape[:2] + (H,))
        steps = range(len(xs_v) - 1, -1, -1) if reverse else range(len(xs_v))
        for t in steps:
            h = np.tanh(xs_v[t] @ Wx_v + h @ Wh_v + b_v)
            out[t] = h
        extra = ((out * out).astype(dtype),) if closed else ()
        return (out.astype(dtype), h.astype(dtype)) + extra

    return prog, oracle


def elman_data(length, n=3, F=4, H=5, seed=0):
    """(inputs [xs, h0], params [Wx, Wh, b]) of random values (never zeros)."""
    rng = np.random.default_rng(seed)
    f = np.float32
    xs = rng.standard_normal((length, n, F)).astype(f)
    h0 = rng.standard_normal((n, H)).astype(f) * 0.5
    params = [(rng.standard_normal((F, H)) * 0.5).astype(f), (rng.standard_normal((H, H)) * 0.5).astype(f),
              rng.standard_normal(H).astype(f) * 0.1]
    return [xs, h0], params
