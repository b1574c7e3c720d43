"""Symbolic reverse-mode differentiation: gradients are graphs.

Each op's vjp is written in graph ops, so the gradient graph can itself be
differentiated (Hessian-vector products, `hessian`). Stable forms are chosen
when nodes are built, before this runs (DESIGN.md: stabilise before
differentiating).
"""
from __future__ import annotations

from .errors import GradientError
from .graph import toposort
from .node import OPS, Tensor
from .ops import elementwise as ew
from .ops import movement as mv
from .types import TupleType, is_float


def grad(cost, wrt, disconnected: str = "raise"):
    """d cost / d wrt for a scalar float `cost`; `wrt` is a tensor or a list of them.

    disconnected="raise" (the default, as Theano) raises GradientError when cost does
    not depend on a `wrt`; "zero" returns zeros instead.
    """
    single = isinstance(wrt, Tensor)
    wrts = [wrt] if single else list(wrt)
    if not isinstance(cost, Tensor):
        raise TypeError("grad: cost must be a tensor")
    if cost.ndim != 0:
        raise GradientError(f"grad: cost must be a scalar, got {cost.type} built at {cost.where}; "
                            "sum or mean it first, or use ng.jacobian")
    if not is_float(cost.dtype):
        raise GradientError(f"grad: cost must be float, got {cost.type} built at {cost.where}")
    for w in wrts:
        if not isinstance(w, Tensor):
            raise TypeError(f"grad: wrt must be tensors, got {type(w).__name__}")
        if not is_float(w.dtype):
            raise GradientError(f"grad: cannot differentiate with respect to {w.name or w.op}: {w.type} "
                                f"(built at {w.where}): integer and bool tensors have no gradient")

    cot, blocked, depends = _backprop([(cost, ew.ones_like(cost))], wrts)
    out = []
    for w in wrts:
        g = cot.get(id(w))
        if g is None:
            label = f"{w.name or w.op}: {w.type} (built at {w.where})"
            if blocked:
                raise GradientError(f"grad: cost depends on {label} only through non-differentiable "
                                    f"paths: {'; '.join(dict.fromkeys(blocked))}")
            if id(w) not in depends and disconnected == "raise":
                raise GradientError(f"grad: cost (built at {cost.where}) does not depend on {label}; "
                                    "pass disconnected='zero' to get zeros")
            g = ew.zeros_like(w)
        out.append(g)
    return out[0] if single else out


def vjp(outputs, cotangents, wrt) -> list:
    """Cotangents of the tensors `wrt` given `cotangents` of `outputs` (graphs, like grad's);
    None where no gradient reaches (used for a scan's body, nngraph/scan_grad.py)."""
    cot, _, _ = _backprop(list(zip(outputs, cotangents)), list(wrt))
    return [cot.get(id(w)) for w in wrt]


def _backprop(seeds, wrts) -> tuple:
    """Reverse sweep from (node, cotangent) seeds: ({id(node): cotangent}, blocked paths,
    ids of the nodes that depend on `wrts`). The cotangent of a node with several results
    (a scan) is a dict {result index: cotangent}, filled by its scan_output users."""
    nodes = toposort([n for n, _ in seeds])
    wrt_ids = {id(w) for w in wrts}
    depends = set()
    for n in nodes:
        if id(n) in wrt_ids or any(id(i) in depends for i in n.inputs):
            depends.add(id(n))
    cot: dict = {}
    for n, g in seeds:
        _accumulate(cot, n, g)
    blocked = []
    for n in reversed(nodes):
        g = cot.get(id(n))
        if g is None or not n.inputs:
            continue
        needs = tuple(id(i) in depends and _differentiable(i) for i in n.inputs)
        for i in n.inputs:
            if id(i) in depends and not _differentiable(i):
                blocked.append(f"{n.op} at {n.where} (its input {i.op}: {i.type} is not float)")
        if not any(needs):
            continue
        op = OPS[n.op]
        if op.nondiff or op.vjp is None:
            blocked.append(f"{n.op} at {n.where} (not differentiable)")
            continue
        for i, gi, need in zip(n.inputs, op.vjp(n, g, needs), needs):
            if need and gi is not None:
                _accumulate(cot, i, gi)
    return cot, blocked, depends


def _differentiable(n) -> bool:
    return isinstance(n.type, TupleType) or is_float(n.dtype)


def _accumulate(cot: dict, node, g) -> None:
    """Add cotangent g into cot[id(node)] (per result for a multi-result node)."""
    if isinstance(node.type, TupleType):
        parts = dict(cot.get(id(node)) or {})
        for k, gk in g.items():
            parts[k] = gk if k not in parts else ew.add(parts[k], gk)
        cot[id(node)] = parts
        return
    if g.dtype != node.dtype:
        g = ew.cast(g, node.dtype)
    prev = cot.get(id(node))
    cot[id(node)] = g if prev is None else ew.add(prev, g)


def jacobian(y, x):
    """dy/dx with shape y.shape + x.shape (y must have a static size)."""
    from .types import Dim
    if any(isinstance(s, Dim) for s in y.shape):
        raise GradientError(f"jacobian: y must have a static shape, got {y.type}")
    n = 1
    for s in y.shape:
        n *= s
    if n == 0:
        return mv.broadcast_to(ew.zeros_like(mv.reshape(x, (1,) + tuple(x.shape))), tuple(y.shape) + tuple(x.shape))
    flat = mv.reshape(y, (n,))
    rows = [grad(mv.getitem(flat, i), x, disconnected="zero") for i in range(n)]
    return mv.reshape(mv.stack(rows, 0), tuple(y.shape) + tuple(x.shape))


def hessian(cost, x):
    """The matrix of second derivatives of a scalar cost, shape x.shape + x.shape."""
    return jacobian(grad(cost, x), x)
