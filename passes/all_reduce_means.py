"""The `all_reduce_means` pass: in a job of R > 1 processes, all_reduce(x, "mean")
becomes all_reduce(x, "sum") * (1/R).

Why: the lowering packs every all-reduced value into one receive buffer that its
consumers read in place (passes/lower/collective.py); a mean left whole would need
a kernel that scales each value out of that buffer. Split, the scale is one more
multiply that fuses into whatever consumes the sum (an SGD step, a batch-norm
normalisation). The value is the reference's own (nngraph/distributed.py scales the
sum by 1/R in the tensor's dtype). In one process a mean is the identity and the
graph is left as it is; R is read when the graph is compiled, as the lowering does.
"""
from __future__ import annotations

from nngraph import distributed
from nngraph.graph import Graph

from . import rewrite
from .log import Rewrites
from .rewrites.patterns import const, node


def split_all_reduce_mean(n):
    """all_reduce(x, mean) -> all_reduce(x, sum) * (1/R) in a job of R > 1 processes."""
    if n.op != "all_reduce" or n.attrs["reduce"] != "mean":
        return None
    ranks = distributed.size()
    if ranks == 1:
        return None
    total = node("all_reduce", n.inputs, n, reduce="sum")
    return node("mul", (total, const(1.0 / ranks, n.dtype, n)), n)


def all_reduce_means(graph: Graph, counts: Rewrites | None = None) -> Graph:
    if not any(n.op == "all_reduce" for n in graph.nodes()):
        return graph
    return rewrite.rewrite(graph, [split_all_reduce_mean], counts)
