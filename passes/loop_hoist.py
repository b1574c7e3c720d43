"""Loop-invariant code motion for `scan` nodes: the per-step work that does not
depend on the carry runs once, over all steps, before the loop.

In an RNN step `h' = tanh(x_t @ W + h @ U + b)` the input projection `x_t @ W`
reads only the step's slice of xs and a closed-over weight. Inside the loop it is
T small products; before the loop it is ONE product `xs @ W` over (T, N, F), which
BLAS runs at full speed (the rows of all steps form one (T*N, F) matrix), and the
body reads its per-step slice as a new xs input instead.

Which nodes move: the body's *carry-free* nodes (no path from a carry input) made
of elementwise ops and matmuls over xs slices, closed-over values and constants.
Of those, the ones a carry-dependent node (or a body output) reads form the
frontier; a frontier node moves out when its carry-free cone holds a matmul (a
purely elementwise cone is cheaper fused into the per-step kernel than stored for
all steps). Moving is batching: each node of the cone is rebuilt outside with the
time axis in front (xs stay as they are, closed-over values broadcast, a per-step
operand of lower rank than its result gets size-1 axes after the time axis).

Values that do not depend on the step at all were already moved out when the scan
was built (nngraph/scan_build.py closes over them). The log counts
"hoist:<op>" per moved node; the lowering's dump names the per-step inputs
computed before the loop (passes/lower/scan.py).
"""
from __future__ import annotations

from nngraph.graph import Graph, toposort
from nngraph.node import OPS, make

from .log import Rewrites
from .rewrite import map_graph, rebuild

HOISTED = "hoisted"     # name prefix of the body inputs that replace moved work


def hoist_scans(graph: Graph, counts: Rewrites | None = None) -> Graph:
    """Every scan of `graph` with its carry-free matmul work moved before the loop."""
    counts = Rewrites() if counts is None else counts
    if not any(n.op == "scan" for n in graph.nodes()):
        return graph

    def visit(n, ins):
        m = rebuild(n, ins)
        return hoisted(m, counts) if m.op == "scan" else m

    return map_graph(graph, visit)


def _batchable(n) -> bool:
    kind = OPS[n.op].kind
    if kind == "elementwise":
        return bool(n.inputs)
    return n.op == "matmul" and all(i.ndim >= 2 for i in n.inputs)


def _carry_free(body) -> dict:
    """id(node) -> "x" (varies per step), "c" (closed over or constant) for the body's
    nodes that can be batched without the carry."""
    bg = body.graph
    kind = {id(p): "x" for p in body.xs_in}
    kind.update({id(p): "c" for p in body.closure_in})
    for n in toposort(list(bg.outputs)):
        if id(n) in kind:
            continue
        if n.op == "constant":
            kind[id(n)] = "c"
        elif _batchable(n) and all(id(i) in kind for i in n.inputs):
            kind[id(n)] = "x" if any(kind[id(i)] == "x" for i in n.inputs) else "c"
        elif n.op == "transpose" and kind.get(id(n.inputs[0])) == "c":
            kind[id(n)] = "c"        # Wᵀ kept in the step for its product (nngraph/scan_build.py)
    return kind


def _frontier(body, kind) -> list:
    """Carry-free per-step nodes read by a node that is not, or returned by the body,
    whose cone holds a matmul: the ones worth computing for all steps at once."""
    bg = body.graph
    wanted = []
    seen = set()
    outs = {id(o) for o in bg.outputs}
    for n in toposort(list(bg.outputs)):
        for i in n.inputs if id(n) not in kind else ():
            if kind.get(id(i)) == "x" and not _is_input(i, body) and id(i) not in seen:
                seen.add(id(i))
                wanted.append(i)
        if id(n) in outs and kind.get(id(n)) == "x" and not _is_input(n, body) and id(n) not in seen:
            seen.add(id(n))
            wanted.append(n)
    return [f for f in wanted if _has_matmul(f, kind)]


def _is_input(n, body) -> bool:
    return any(n is p for p in body.graph.inputs)


def _has_matmul(n, kind) -> bool:
    return any(m.op == "matmul" for m in toposort([n]) if kind.get(id(m)) == "x")


def hoisted(scan, counts: Rewrites):
    """`scan` with its frontier (see _frontier) computed before the loop, or `scan`."""
    from nngraph.scan_body import Body
    body = scan.attrs["body"]
    kind = _carry_free(body)
    front = _frontier(body, kind)
    if not front:
        return scan
    k, nx = body.n_carry, body.n_xs
    outer = {id(p): v for p, v in zip(body.graph.inputs, scan.inputs)}
    batched: dict = {}
    new_xs = [batch_out_of_loop(f, kind, outer, batched, counts) for f in front]
    bg = body.graph
    steps = [make("placeholder", (), name=f"{HOISTED}{j}", where=f.where, shape=tuple(f.shape), dtype=f.dtype)
             for j, f in enumerate(front)]
    swap = {id(f): p for f, p in zip(front, steps)}
    g = map_graph(Graph(list(bg.inputs), list(bg.outputs), [], bg.name),
                  lambda n, ins: swap[id(n)] if id(n) in swap else rebuild(n, ins))
    used = {id(m) for m in toposort(list(g.outputs))}
    keep = [j for j in range(nx) if id(bg.inputs[k + j]) in used]    # xs only the moved work read go
    inputs = bg.inputs[:k] + [bg.inputs[k + j] for j in keep] + steps + bg.inputs[k + nx:]
    new_body = Body(Graph(inputs, g.outputs, [], bg.name), k, len(keep) + len(steps))
    ins = scan.inputs[:k] + tuple(scan.inputs[k + j] for j in keep) + tuple(new_xs) + scan.inputs[k + nx:]
    return make("scan", ins, name=scan.name, where=scan.where, canonical=False,
                **{**scan.attrs, "body": new_body})


def batch_out_of_loop(n, kind, outer, memo, counts, tag="hoist"):
    """n rebuilt outside the loop, with the time axis in front where it varies per step.
    kind: id(node) -> "x" (varies per step) or "c" (the same every step) for n's cone;
    outer: id(node) -> the outside node standing for it (xs stacked, closed-over values);
    counts gets "<tag>:<op>" per node rebuilt."""
    if id(n) in memo:
        return memo[id(n)]
    if id(n) in outer:
        out = outer[id(n)]
    elif n.op == "constant":
        out = n
    else:
        ins = [batch_out_of_loop(i, kind, outer, memo, counts, tag) for i in n.inputs]
        if OPS[n.op].kind == "elementwise":
            ins = [_align(b, i, n) if kind[id(i)] == "x" else b for b, i in zip(ins, n.inputs)]
        out = make(n.op, ins, name=n.name, where=n.where, **n.attrs)
        counts.fired(f"{tag}:{n.op}")
    memo[id(n)] = out
    return out


def _align(batched, per_step, result):
    """A per-step operand of lower rank than the elementwise result: size-1 axes after time."""
    missing = result.ndim - per_step.ndim
    if missing <= 0:
        return batched
    shape = (batched.shape[0],) + (1,) * missing + tuple(batched.shape[1:])
    return make("reshape", (batched,), where=result.where, shape=shape)
