"""`ng.scan(step, init, xs, length=None, reverse=False)`: build a loop node by tracing `step`.

`step` is called once, on fresh placeholders standing for the carry and for one step
of xs; what it returns is the body graph (nngraph/scan_body.py). Everything the step
reads that does not depend on those placeholders is loop-invariant: parameters,
outer placeholders and outer values (also expressions of them written inside `step`,
such as `W + 1`) become closed-over inputs of the scan node, computed once outside
the loop; constants stay inside, and so does a transpose that only products read
(`h @ W.T` reads W transposed; a copy outside would cost a pass over W per call). The node is type-checked as it is built
(nngraph/ops/scan.py): a step that changes a carry's type, or xs of different
lengths, raise ShapeError naming the user's line.
"""
from __future__ import annotations

from .errors import ShapeError
from .graph import Graph, toposort
from .node import Tensor, make
from .ops import elementwise as ew
from .scan_body import Body, results
from .size_unify import unify
from .sizes import can_join
from .source_location import user_location
from .types import TensorType, as_size


def scan(step, init, xs=None, length=None, reverse=False):
    """A loop in the graph, as jax.lax.scan: `step(carry, x_t) -> (carry, y_t)`.

    `init` and the carry are a tensor or a (nested) tuple/list of tensors; so are `xs`
    (time on axis 0) and `y_t` (or None). Returns `(final_carry, ys)`, ys stacked on a
    new axis 0. `length` (an int or a dynamic size such as `x.shape[0]`) is needed only
    when `xs` is None. With `reverse=True` the steps run from the last to the first;
    ys[t] is still the result of step t. docs/scan.md is the user guide.
    """
    where = user_location()
    init_leaves, init_spec = _flatten(init, "init", where)
    xs_leaves, xs_spec = _flatten(xs, "xs", where)
    n = _length(xs_leaves, length, where)
    carry_ph = [_placeholder(c.type, f"carry{i}", where) for i, c in enumerate(init_leaves)]
    x_ph = [_placeholder(TensorType(x.dtype, x.shape[1:]), f"x{i}", where) for i, x in enumerate(xs_leaves)]
    out = step(_unflatten(init_spec, carry_ph), _unflatten(xs_spec, x_ph))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ShapeError(f"scan (built at {where}): step must return a pair (carry, y), got {type(out).__name__}")
    carry_out, carry_spec = _flatten(out[0], "the carry step returns", where, like=init_leaves)
    if _strip(carry_spec) != _strip(init_spec):
        raise ShapeError(f"scan (built at {where}): step returns a carry of structure {_show(carry_spec)} "
                         f"but init is {_show(init_spec)}")
    ys, ys_spec = _flatten(out[1], "y", where)
    node = trace_node(carry_ph, x_ph, carry_out, ys, init_leaves, xs_leaves, n, reverse, where)
    res = results(node)
    k = len(init_leaves)
    return _unflatten(init_spec, res[:k]), _unflatten(ys_spec, res[k:])


def trace_node(carry_ph, x_ph, carry_out, ys, init, xs, length, reverse, where) -> Tensor:
    """The scan node of a traced step: carry_ph/x_ph are the placeholders the step was
    called on, carry_out/ys what it returned; init/xs the outer values."""
    body, closure = _close_over(carry_ph + x_ph, list(carry_out) + list(ys), where)
    body = Body(unify(body), len(carry_ph), len(x_ph))
    for i, (c, o) in enumerate(zip(body.carry_in, body.carry_out)):
        if c.type != o.type:
            raise ShapeError(f"scan (built at {where}): step returns carry {i} as {o.type} (built at "
                             f"{o.where}) but init gives {c.type}; a carry keeps its type")
    return make("scan", tuple(init) + tuple(xs) + tuple(closure), where=where,
                body=body, length=length, reverse=bool(reverse))


def _close_over(params: list, outs: list, where: str) -> tuple:
    """(the step as a Graph on params + closure placeholders, the outer closed-over nodes)."""
    variant = {id(p) for p in params}
    order = toposort(outs)
    for n in order:
        if n.inputs and any(id(i) in variant for i in n.inputs):
            variant.add(id(n))
    mapping: dict[int, Tensor] = {id(p): p for p in params}
    closure, closure_ph = [], []
    read_by = {}
    for n in order:
        if id(n) in variant:
            for i in n.inputs:
                read_by.setdefault(id(i), set()).add(n.op)

    def get(i: Tensor) -> Tensor:
        if id(i) not in mapping:   # loop-invariant: a constant stays, anything else comes in
            if i.op == "constant":
                mapping[id(i)] = i
            elif _free_in_products(i, read_by.get(id(i), set())):
                mapping[id(i)] = make("transpose", [get(i.inputs[0])], name=i.name, where=i.where,
                                      canonical=False, **i.attrs)
            else:
                closure.append(i)
                ph = _placeholder(i.type, i.name if i.op in ("parameter", "placeholder") and i.name
                                  else f"k{len(closure_ph)}", where)
                closure_ph.append(ph)
                mapping[id(i)] = ph
        return mapping[id(i)]

    for n in order:
        if id(n) in variant and id(n) not in mapping:
            mapping[id(n)] = make(n.op, [get(i) for i in n.inputs], name=n.name, where=n.where,
                                  canonical=False, **n.attrs)
    body_outs = [get(o) for o in outs]
    return Graph(list(params) + closure_ph, body_outs, [], "step"), closure


def _free_in_products(n: Tensor, readers: set) -> bool:
    """Is n a transpose of the last two axes that only products read? Those read their
    operand transposed at no cost, so it stays in the step rather than being made once
    outside as a copy (the backward step's dz @ Uᵀ: no transposed copy of U per call)."""
    if n.op != "transpose" or readers != {"matmul"}:
        return False
    perm, nd = tuple(n.attrs["perm"]), n.ndim
    return nd >= 2 and perm[:-2] == tuple(range(nd - 2)) and perm[-2:] == (nd - 1, nd - 2)


def _placeholder(t: TensorType, name: str, where: str) -> Tensor:
    return make("placeholder", (), name=name, where=where, shape=t.shape, dtype=t.dtype)


def _length(xs: list, length, where: str):
    if not xs:
        if length is None:
            raise ShapeError(f"scan (built at {where}): with xs=None, give length (an int or a size)")
        return as_size(length)
    for x in xs:
        if x.ndim == 0:
            raise ShapeError(f"scan (built at {where}): xs {x.name or x.op}: {x.type} (built at {x.where}) "
                             "has no time axis")
    n = xs[0].shape[0] if length is None else as_size(length)
    for x in xs:
        if not can_join(n, x.shape[0]):
            given = ", ".join(f"{x.name or x.op}: {x.type} (built at {x.where})" for x in xs)
            raise ShapeError(f"scan (built at {where}): xs disagree on the number of steps "
                             f"({'length ' + str(n) + '; ' if length is not None else ''}{given})")
    return n


# ----------------------------------------------------------------------------- (nested) tuples

def _flatten(tree, what: str, where: str, like=None) -> tuple:
    """(leaves, structure) of a tensor, None, or nested tuples/lists of them."""
    leaves: list = []

    def walk(t):
        if t is None:
            return None
        if isinstance(t, (tuple, list)):
            return (type(t).__name__, tuple(walk(x) for x in t))
        if not isinstance(t, Tensor):
            ref = like[len(leaves)] if like is not None and len(leaves) < len(like) else None
            try:
                t = ew.as_tensor(t, like=ref)
            except (TypeError, ValueError):
                raise ShapeError(f"scan (built at {where}): {what} must be tensors or tuples of tensors, "
                                 f"got {type(t).__name__}") from None
        leaves.append(t)
        return "*"
    return leaves, walk(tree)


def _unflatten(spec, leaves: list):
    it = iter(leaves)

    def build(s):
        if s is None:
            return None
        if s == "*":
            return next(it)
        kind, items = s
        built = [build(x) for x in items]
        return tuple(built) if kind == "tuple" else built
    return build(spec)


def _strip(spec):
    """The structure without tuple-or-list: a step may return a list for a tuple carry."""
    return spec if spec is None or spec == "*" else tuple(_strip(s) for s in spec[1])


def _show(spec) -> str:
    if spec is None:
        return "None"
    if spec == "*":
        return "tensor"
    return "(" + ", ".join(_show(s) for s in spec[1]) + ")"

