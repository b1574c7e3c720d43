"""`Emitter.value(node, index, mask)`: the body value of a node at a point given as
one int64 body value per axis, emitted into one stage body:

- a node with a buffer is a load (masked when under a pad/concatenate mask);
- a reduction computed by an earlier stage of the same kernel is a `result`;
- the matmul of a contraction epilogue is `acc`;
- anything else is inlined (recomputed) by its op's value rule from the registry
  (`@inline`, passes/lower/registry.py): elementwise ops become their scalar op
  (passes/lower/elementwise.py), movement ops transform the index
  (passes/lower/movement.py).
"""
from __future__ import annotations

from nngraph.node import Tensor

from .body import Body, LoweringError, NotFusable, broadcast_index, py_scalar
from .registry import inline


class Emitter:
    """Emits node values into one stage body (see the module docstring).

    buf_of:   id(node) -> buffer id for materialised nodes and sources
    results:  id(node) -> (stage, slot, kept axes) for reductions of earlier stages
    outer:    the body values of the kernel's outer loop indices
    inline:   ids of materialised nodes to recompute rather than load (members of
              the same kernel, whose buffers it writes)
    forbid:   buffers this kernel writes (reading them is NotFusable)
    acc:      (matmul node, its index) in a contraction epilogue
    probe:    record result references instead of checking them (see fusion)
    """

    def __init__(self, body: Body, buf_of: dict, buffers: dict, results=None, outer=(), stage_no=0,
                 inline=(), forbid=(), acc=None, probe=False):
        self.body, self.buf_of, self.buffers = body, buf_of, buffers
        self.results = results or {}
        self.outer, self.stage_no = tuple(outer), stage_no
        # inline and forbid are kept by reference: the kernel grows them as members join
        self.inline = inline if isinstance(inline, set) else set(inline)
        self.forbid = forbid if isinstance(forbid, set) else set(forbid)
        self.acc, self.probe = acc, probe
        self.memo: dict = {}
        self.loads: set = set()
        self.refs: list = []          # (node, index) of result references (probe mode)

    def mark(self):
        return (self.body.mark(), dict(self.memo), set(self.loads))

    def rollback(self, m):
        self.body.rollback(m[0])
        self.memo, self.loads = m[1], m[2]

    # ------------------------------------------------------------------ entry
    def value(self, n: Tensor, idx: tuple, mask=None) -> int:
        idx = tuple(idx)
        key = (id(n), idx, mask)
        v = self.memo.get(key)
        if v is None:
            v = self._value(n, idx, mask)
            self.memo[key] = v
        return v

    def _value(self, n, idx, mask):
        b = self.body
        r = self.results.get(id(n))
        if r is not None:
            return self._result(n, idx, r)
        if self.acc is not None and n is self.acc[0]:
            if any(a != b and s != 1 for a, b, s in zip(idx, self.acc[1], n.shape)):
                raise NotFusable("matmul product read at another index than its epilogue point")
            return b.emit("acc", (), n.dtype)
        if n.op == "constant":
            arr = n.attrs["value"].array
            if arr.size == 1:
                return b.emit("const", (), n.dtype, value=py_scalar(arr.reshape(()).item(), n.dtype))
        if id(n) in self.buf_of and id(n) not in self.inline:
            return self.load(self.buf_of[id(n)], idx, mask)
        rule = inline.rule(n.op)
        if rule is None:
            raise LoweringError(f"cannot inline {n.op} ({n.type} built at {n.where}); it must be materialised")
        return rule(self, n, idx, mask)

    def _result(self, n, idx, r):
        stage, slot, kept = r
        if stage >= self.stage_no and not self.probe:
            raise NotFusable("reduction read in its own stage")
        if self.probe:
            self.refs.append((n, idx))
        else:
            for q, k in enumerate(kept):
                if n.shape[k] != 1 and idx[k] != self.outer[q]:
                    raise NotFusable("reduction result read away from the kernel's outer point")
        return self.body.emit("result", (), n.dtype, stage=stage, slot=slot)

    def load(self, buf: int, idx, mask=None) -> int:
        if buf in self.forbid:
            raise NotFusable("reads a buffer the same kernel writes")
        shape = self.buffers[buf].shape
        idx = tuple(self.body.iconst(0) if s == 1 else i for s, i in zip(shape, idx))
        self.loads.add(buf)
        dt = self.buffers[buf].dtype
        if mask is None:
            return self.body.emit("load", idx, dt, buffer=buf)
        return self.body.emit("load", idx + (mask,), dt, buffer=buf, masked=True, fill=py_scalar(0, dt))

    def operand(self, n, i, idx, mask, dtype=None):
        """Input i of n at n's index idx (broadcast by NumPy rules), cast to dtype if given."""
        x = n.inputs[i]
        v = self.value(x, broadcast_index(self.body, x.shape, n.shape, idx), mask)
        return self.body.cast(v, dtype) if dtype else v
