"""Index guards for lookups inside `scan` bodies (nngraph/index_guards.py does the rest).

A `take`, `check_index` (take's gradient marks its ids with one, so the scatter-add in
the reverse scan of a gradient is covered) or computed one_hot label inside a loop step
must fail the call like one outside a loop: `ng.InputError`, nothing committed. Two ways, chosen per guard:

- ids that are a step's slice of an xs, or a closed-over value, are the same values as
  a tensor outside the loop: the guard is lifted out and checks that whole tensor once,
  before the loop (an input's bad id is then quoted in the message);
- ids computed in the step (from the carry, arithmetic on a slice) are checked in
  the loop: the guard's outputs (nngraph/index_guards.py `guard_outputs`) become extra
  per-step ys of the scan, summed over the steps outside it.

Nested scans work the same way, innermost first. Of twin scans (`ng.grad` builds a
twin of the forward scan that also stores residuals, merged by passes/scans.py) only
the largest gets the extra ys: it still extends the others, so they still merge and
the forward loop still runs once.
"""
from __future__ import annotations

from dataclasses import replace

from .graph import Graph, toposort
from .node import Tensor, make
from .ops import reduce as rd
from .scan_body import Body


def guard_graph(graph: Graph, find, outputs_of, outer: dict | None = None) -> tuple[dict, list]:
    """(mapping id(old node) -> new node, [(guard, outputs or None)]) for `graph`.

    `find(graph, outer)` lists the guards of the graph's own nodes (`outer`: id of a body
    placeholder -> the outermost tensor it stands for, so that one_hot's closed-over iota
    is recognised); `outputs_of(guard)` builds a
    guard's outputs. A pair's outputs are None when the guard's ids are a tensor of
    `graph` (its outputs are built by the caller, once per distinct ids); else they are
    tensors of `graph` already (sums over the steps of a scan)."""
    outer = outer or {}
    pairs = [(gd, None) for gd in find(graph, outer)]
    nodes = toposort(list(graph.inputs) + graph.roots())
    scans = [n for n in nodes if n.op == "scan"]
    new: dict = {}
    for n in nodes:
        ins = tuple(new.get(id(i), i) for i in n.inputs)
        if n.op == "scan" and not _has_larger_twin(n, scans):
            n2, more = _guard_scan(n, ins, find, outputs_of, outer)
            pairs += more
        elif any(a is not b for a, b in zip(ins, n.inputs)):
            n2 = make(n.op, ins, name=n.name, where=n.where, canonical=False, **n.attrs)
        else:
            n2 = n
        if n2 is not n:
            new[id(n)] = n2
    return new, pairs


def _has_larger_twin(s: Tensor, scans: list) -> bool:
    """True when another scan runs on the same inputs with this body and ys appended."""
    return any(t is not s and t.inputs == s.inputs and t.attrs["length"] == s.attrs["length"]
               and t.attrs["reverse"] == s.attrs["reverse"] and t.attrs["body"].extends(s.attrs["body"])
               for t in scans)


def _guard_scan(s: Tensor, ins: tuple, find, outputs_of, outer: dict) -> tuple[Tensor, list]:
    """The scan on `ins` with its in-loop guards as extra ys, and the guard pairs it gives
    the enclosing graph (lifted guards with outer ids, in-loop ones with their sums)."""
    body = s.attrs["body"]
    outer_of = {id(p): ins[i] for i, p in enumerate(body.graph.inputs) if i >= body.n_carry}
    mapping, inner = guard_graph(body.graph, find, outputs_of,
                                 {k: outer.get(id(t), t) for k, t in outer_of.items()})
    lifted, in_loop, extra_ys = [], [], []
    for gd, outs in inner:
        if outs is None and id(gd.ids) in outer_of:
            lifted.append((replace(gd, ids=outer_of[id(gd.ids)], loop=gd.loop or s.where), None))
            continue
        ys = outputs_of(gd) if outs is None else outs
        in_loop.append((replace(gd, loop=gd.loop or s.where), len(extra_ys), len(ys)))
        extra_ys += ys
    if not extra_ys and not mapping:
        return (s if ins == s.inputs else make("scan", ins, name=s.name, where=s.where, canonical=False,
                                               **s.attrs)), lifted
    outputs = [mapping.get(id(o), o) for o in body.graph.outputs] + extra_ys
    new_body = Body(Graph(list(body.graph.inputs), outputs, [], body.graph.name), body.n_carry, body.n_xs)
    s2 = make("scan", ins, name=s.name, where=s.where, canonical=False, **dict(s.attrs, body=new_body))
    first = len(s.type.parts)
    pairs = [(gd, [rd.sum(make("scan_output", (s2,), index=first + at + j)) for j in range(k)])
             for gd, at, k in in_loop]
    return s2, lifted + pairs
