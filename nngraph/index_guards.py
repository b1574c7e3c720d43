"""The call-time index check of `take` and `check_index` (nngraph/ops/gather.py).

An id outside [-n, n) never reads outside an array (every backend clamps it), but
the call must not silently use a wrong row either. `add_index_guards` gives the
graph one extra scalar output per distinct (ids, n): the number of ids out of
range. The runner wrapper (runtime/index_check.py) reads those counts after the
kernels ran and before the Function commits any parameter update, and raises
`InputError` naming the op, its line, the ids and the valid range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .graph import Graph
from .node import Tensor
from .ops import elementwise as ew
from .ops import reduce as rd
from .types import Dim, eval_size


@dataclass(frozen=True)
class IndexGuard:
    """What one extra output counts: ids of `op` (built at `where`) outside [-size, size)."""
    op: Tensor
    ids: Tensor
    size: object


def _checked(n: Tensor):
    if n.op == "take":
        return n.inputs[1], n.inputs[0].shape[n.attrs["axis"]]
    if n.op == "check_index":
        return n.inputs[0], n.attrs["size"]
    return None


def add_index_guards(graph: Graph) -> tuple[Graph, list]:
    """(graph with one out-of-range count per checked ids appended to its outputs, guards)."""
    guards, seen = [], set()
    for n in graph.nodes():
        c = _checked(n)
        if c is None or (id(c[0]), c[1]) in seen:
            continue
        seen.add((id(c[0]), c[1]))
        guards.append(IndexGuard(n, c[0], c[1]))
    if not guards:
        return graph, []
    counts = []
    for gd in guards:
        size = ew.numel((gd.size,), gd.ids.dtype)
        bad = ew.logical_or(ew.less(gd.ids, ew.neg(size)), ew.greater_equal(gd.ids, size))
        counts.append(rd.sum(ew.cast(bad, "float32")))
    return Graph(list(graph.inputs), list(graph.outputs) + counts, list(graph.updates), graph.name), guards


def raise_if_out_of_range(guards: list, counts: list, env: dict, feeds: dict):
    """Raise InputError for the first guard whose count is not 0. `feeds` maps id(placeholder)
    to the array given, so ids that are an input can be quoted."""
    for gd, c in zip(guards, counts):
        k = int(c.item())   # a NumPy 0-d array or a device tensor
        if k == 0:
            continue
        n = eval_size(gd.size, env)
        sym = f" ({gd.size} = {n})" if isinstance(gd.size, Dim) else ""
        what = f"input '{gd.ids.name}'" if gd.ids.op == "placeholder" else f"ids built at {gd.ids.where}"
        example = ""
        arr = feeds.get(id(gd.ids))
        if isinstance(arr, np.ndarray):   # ids given as a device tensor are not quoted
            bad = arr[(arr < -n) | (arr >= n)]
            example = f", e.g. {bad.reshape(-1)[0]}" if bad.size else ""
        target = (f"axis {gd.op.attrs['axis']} of {gd.op.inputs[0].name or gd.op.inputs[0].op}: "
                  f"{gd.op.inputs[0].type}" if gd.op.op == "take" else "the indexed axis")
        raise InputError(f"{gd.op.op} (built at {gd.op.where}): {k} id{'s' if k != 1 else ''} of {what} "
                         f"out of range{example}: {target} has size {n}{sym}, so ids must lie in "
                         f"[{-n}, {n}); nothing was updated")
