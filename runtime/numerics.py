"""check_numerics in the user's terms: the graph op (and the line that built it)
that made the first NaN/inf, not the fused kernel that happened to compute it.

A backend reports the first kernel whose stored values are not finite
(`NumericsError.kernel`, its schedule position). Every kernel before it stored
finite values, so the culprit is one of the graph nodes that kernel computes
(passes/kernel_map.py): the first of them, in graph order, whose value is not
finite although its inputs are. The values come from the NumPy reference
interpreter on the same inputs and parameters; this runs only after a failure.
"""
from __future__ import annotations

import numpy as np

from nngraph.errors import NumericsError
from nngraph.interpreter import evaluate
from nngraph.textir import value_names


def _finite(a) -> bool:
    if isinstance(a, tuple):   # the results of a loop (scan)
        return all(_finite(x) for x in a)
    a = np.asarray(a)
    return a.dtype.kind != "f" or bool(np.all(np.isfinite(a)))


def _candidates(graph, program, kernel):
    nodes = getattr(program, "nodes", None)
    if nodes is not None and kernel is not None:
        return nodes.computes(kernel)
    return [n for n in graph.nodes() if n.op not in ("placeholder", "parameter", "constant")]


def culprit(graph, program, kernel, inputs, params, env):
    """(node, value, True) for the first candidate that turns finite inputs into NaN/inf;
    (node, value, False) for the first non-finite one when none does; or None."""
    names = value_names(graph)
    cands = [n for n in _candidates(graph, program, kernel) if id(n) in names]
    if not cands:
        return None
    wanted = list({id(x): x for n in cands for x in (n, *n.inputs)}.values())
    feeds = dict(zip(graph.inputs, inputs))
    pmap = {id(p): v for p, v in zip(graph.params(), params)}
    with np.errstate(all="ignore"):
        vals = dict(zip(map(id, wanted), evaluate(wanted, feeds, env, pmap)))
    bad = [n for n in cands if not _finite(vals[id(n)])]
    for n in bad:
        if all(_finite(vals[id(i)]) for i in n.inputs):
            return n, vals[id(n)], True
    return (bad[0], vals[id(bad[0])], False) if bad else None


def in_graph_terms(graph, program, error: NumericsError, inputs, params, env) -> NumericsError:
    """A NumericsError naming the graph op and its line, or `error` when the
    reference computes finite values there (then the kernel's own message stands)."""
    kernel = getattr(error, "kernel", None)
    found = culprit(graph, program, kernel, inputs, params, env)
    if found is None:
        return error
    n, v, origin = found
    if n.op == "scan":
        return _inside_loop(graph, n, inputs, params, env) or error
    kind = "NaN" if np.isnan(np.asarray(v)).any() else "inf"
    name = value_names(graph)[id(n)]
    fused = ""
    if kernel is not None and program is not None:
        fused = f", computed in kernel {program.schedule[kernel].name}"
    err = NumericsError(f"{n.op} made a non-finite value ({kind}) in {n.type} built at {n.where} "
                        f"(%{name} of the optimised graph{fused}{', from finite inputs' if origin else ''}); "
                        "no update was applied")
    err.kernel, err.node = kernel, n
    return err


def _inside_loop(graph, scan, inputs, params, env):
    """The op in a loop's body that made the first NaN/inf, found by running the loop
    again with the reference interpreter's own check (it names the body's node)."""
    feeds = dict(zip(graph.inputs, inputs))
    pmap = {id(p): v for p, v in zip(graph.params(), params)}
    try:
        with np.errstate(all="ignore"):
            evaluate([scan], feeds, env, pmap, check_numerics=True)
    except NumericsError as inner:
        err = NumericsError(f"{inner}, in a step of the loop (scan) built at {scan.where} "
                            f"(%{value_names(graph)[id(scan)]} of the optimised graph); no update was applied")
        err.kernel, err.node = None, scan
        return err
    return None
