"""Hand-built Programs for codegen tests (the lowering is tested elsewhere): a tiny
builder for buffers and SSA bodies, and a runner through runtime.cpu."""
from __future__ import annotations

import numpy as np

from nngraph.types import Dim
from passes.program import Buffer, LoopKernel, MatmulKernel, Program, Stage, Store, instr

__all__ = ["Dim", "LoopKernel", "MatmulKernel", "Stage", "Store", "Body", "ProgBuilder"]


class Body:
    """An SSA list; calling it appends an instruction and returns its index."""

    def __init__(self):
        self.ins = []

    def __call__(self, op, *args, dtype="float32", **attrs) -> int:
        self.ins.append(instr(op, args, dtype=dtype, **attrs))
        return len(self.ins) - 1

    def idx(self, axis):
        return self("idx", dtype="int64", axis=axis)

    def load(self, buf, *index, dtype=None, mask=None, fill=0):
        extra = {"masked": True, "fill": fill} if mask is not None else {}
        args = index + ((mask,) if mask is not None else ())
        return self("load", *args, dtype=dtype or self.pb.buffers[buf].dtype, buffer=buf, **extra)


class ProgBuilder:
    def __init__(self):
        self.buffers, self.schedule = {}, []
        self.inputs, self.params, self.outputs, self.updates = [], [], [], []
        self.plan = {}

    def body(self) -> Body:
        b = Body()
        b.pb = self
        return b

    def buf(self, name, dtype, shape, kind="temp", value=None, param=None, source=None) -> int:
        i = len(self.buffers)
        self.buffers[i] = Buffer(i, name, dtype, tuple(shape), kind, value, param, source)
        if kind == "input":
            self.inputs.append(i)
        elif kind == "param":
            self.params.append(i)
        elif kind == "output":
            self.outputs.append(i)
        return i

    def update(self, param, name=None):
        p = self.buffers[param]
        u = self.buf(name or p.name + "_new", p.dtype, p.shape, "update", param=param)
        self.updates.append((param, u))
        return u

    def kernel(self, k):
        self.schedule.append(k)
        return k

    def program(self) -> Program:
        return Program(self.buffers, self.schedule, self.inputs, self.params, self.outputs, self.updates, self.plan)

    def build(self, check_numerics=False):
        from runtime.cpu import build_program
        return build_program(self.program(), check_numerics=check_numerics)

    def run(self, inputs, params=(), env=None, check_numerics=False):
        runner, _ = self.build(check_numerics)
        return runner.run([np.ascontiguousarray(a) for a in inputs], list(params), env or {})


def pointwise(pb, out, outer, body, value, index=None):
    """A one-stage map kernel storing `value` at the outer index."""
    idx = index if index is not None else tuple(range(len(outer)))
    return pb.kernel(LoopKernel("pw", tuple(outer), [Stage((), body.ins, (), [Store(out, idx, value)])]))
