"""The call-time index check of `take` and `check_index` (nngraph/ops/gather.py), and
of the class ids that `one_hot` (so `cross_entropy`) compares with 0..n-1.

An id outside [-n, n) never reads outside an array (every backend clamps it), but
the call must not silently use a wrong row either. `add_index_guards` gives the
graph one extra scalar output per distinct (ids, n): the number of ids out of
range. The runner wrapper (runtime/index_check.py) reads those counts after the
kernels ran and before the Function commits any parameter update, and raises
`InputError` naming the op, its line, the ids and the valid range.

Class ids must lie in [0, n): an id outside selects no class (loss 0, gradient 0).
Labels that are a graph input are checked on the host before any kernel runs
(runtime/checks.py, one min/max); labels computed in the graph get a guard here, with
a second output, the sum of the bad ids, which is the bad id itself when only one is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .graph import Graph
from .loop_guards import guard_graph
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
    class_ids: bool = False   # one_hot's labels: valid ids are [0, size), not [-size, size)
    loop: str = ""            # where the scan holding `op` was built (nngraph/loop_guards.py)

    @property
    def n_outputs(self) -> int:
        return 2 if self.class_ids else 1


def one_hot_labels(n: Tensor, outer: dict | None = None):
    """(labels, n_classes) when `n` is the compare equal(expand_dims(labels), iota(last
    axis)) that `one_hot` builds, else None. In a scan body the iota is closed over:
    `outer` maps a body placeholder to the outer tensor it stands for."""
    if n.op != "equal":
        return None
    lhs, rhs = n.inputs
    rhs = (outer or {}).get(id(rhs), rhs)
    if rhs.op != "iota" or rhs.attrs["axis"] != rhs.ndim - 1 or lhs.op not in ("reshape", "expand_dims"):
        return None
    return lhs.inputs[0], rhs.shape[-1]


def _checked(n: Tensor):
    if n.op == "take":
        return n.inputs[1], n.inputs[0].shape[n.attrs["axis"]]
    if n.op == "check_index":
        return n.inputs[0], n.attrs["size"]
    return None


def _computed_class_ids(n: Tensor, inputs: set, outer: dict):
    """(labels, n_classes) of a one_hot whose labels are not a graph input (those are
    checked on the host, runtime/checks.py), else None."""
    c = one_hot_labels(n, outer)
    if c is None or id(c[0]) in inputs:
        return None
    return c


def guard_outputs(gd: IndexGuard) -> list:
    """The out-of-range count (float32) of gd's ids, then for class ids the int64 sum of the bad ones."""
    size = ew.numel((gd.size,), gd.ids.dtype)
    low = ew.zeros_like(size) if gd.class_ids else ew.neg(size)
    bad = ew.logical_or(ew.less(gd.ids, low), ew.greater_equal(gd.ids, size))
    outs = [rd.sum(ew.cast(bad, "float32"))]
    if gd.class_ids:
        wide = ew.cast(gd.ids, "int64")
        outs.append(rd.sum(ew.where(bad, wide, ew.zeros_like(wide))))
    return outs


def _find(graph: Graph, host_checked: set, outer: dict) -> list:
    """The guards of the graph's own nodes (not inside scan bodies), one per distinct (ids, size)."""
    guards, seen = [], set()
    for n in graph.nodes():
        c, class_ids = _checked(n), False
        if c is None:
            c, class_ids = _computed_class_ids(n, host_checked, outer), True
        if c is None or (id(c[0]), c[1], class_ids) in seen:
            continue
        seen.add((id(c[0]), c[1], class_ids))
        guards.append(IndexGuard(n, c[0], c[1], class_ids))
    return guards


def add_index_guards(graph: Graph) -> tuple[Graph, list]:
    """(graph with each guard's outputs (out-of-range count first) appended to its outputs, guards).
    Lookups inside scan bodies are guarded too (nngraph/loop_guards.py)."""
    host_checked = {id(ph) for ph in graph.inputs}
    top = graph

    def find(g, outer):   # labels that are an input of the compiled graph are checked on the host
        return _find(g, host_checked if g is top else set(), outer)
    mapping, pairs = guard_graph(graph, find, guard_outputs)
    guards, extra, seen = [], [], set()
    for gd, outs in pairs:
        if outs is None:
            key = (id(gd.ids), gd.size, gd.class_ids)
            if key in seen:
                continue
            seen.add(key)
            outs = guard_outputs(gd)
        guards.append(gd)
        extra += outs
    if not guards:
        return graph, []
    m = lambda t: mapping.get(id(t), t)  # noqa: E731
    return Graph(list(graph.inputs), [m(o) for o in graph.outputs] + extra,
                 [(p, m(v)) for p, v in graph.updates], graph.name), guards


def raise_if_out_of_range(guards: list, outputs: list, env: dict, feeds: dict):
    """Raise InputError for the first guard whose count is not 0. `outputs` are the guards'
    outputs in order; `feeds` maps id(placeholder) to the array given, so ids that are an
    input can be quoted."""
    at = 0
    for gd in guards:
        got, at = outputs[at:at + gd.n_outputs], at + gd.n_outputs
        k = int(got[0].item())   # a NumPy 0-d array or a device tensor
        if k == 0:
            continue
        n = eval_size(gd.size, env)
        if gd.class_ids:
            _raise_class_ids(gd, k, int(got[1].item()), n)
        sym = f" ({gd.size} = {n})" if isinstance(gd.size, Dim) else ""
        what = _what(gd, feeds)
        example = ""
        arr = feeds.get(id(gd.ids))
        if isinstance(arr, np.ndarray):   # ids given as a device tensor are not quoted
            bad = arr[(arr < -n) | (arr >= n)]
            example = f", e.g. {bad.reshape(-1)[0]}" if bad.size else ""
        target = (f"axis {gd.op.attrs['axis']} of {gd.op.inputs[0].name or gd.op.inputs[0].op}: "
                  f"{gd.op.inputs[0].type}" if gd.op.op == "take" else "the indexed axis")
        raise InputError(f"{gd.op.op} (built at {gd.op.where}{_inside(gd)}): {k} id{'s' if k != 1 else ''} "
                         f"of {what} "
                         f"out of range{example}: {target} has size {n}{sym}, so ids must lie in "
                         f"[{-n}, {n}); nothing was updated")


def _what(gd: IndexGuard, feeds: dict) -> str:
    """The ids as the user knows them: an input's name, else the line that computed them."""
    if gd.ids.op == "placeholder":   # an input of the call, or else a loop's carry
        return f"input '{gd.ids.name}'" if id(gd.ids) in feeds else "ids carried from step to step"
    return f"ids built at {gd.ids.where}"


def _inside(gd: IndexGuard) -> str:
    return f", inside the ng.scan built at {gd.loop}" if gd.loop else ""


def _raise_class_ids(gd: IndexGuard, k: int, bad_sum: int, n: int):
    what = f"class id {bad_sum}" if k == 1 else f"{k} class ids"
    raise InputError(f"one_hot/cross_entropy (built at {gd.op.where}{_inside(gd)}): {what} "
                     f"computed at {gd.ids.where} "
                     f"{'is' if k == 1 else 'are'} out of range: the valid ids are 0 to {n - 1} ({n} classes); "
                     "nothing was updated")
