"""all_reduce: the collective of data-parallel training, an op of the graph (as
JAX's psum), so the compiler sees where the processes' values meet and packs the
independent ones of a step into a few buffers, each reduced by one MPI call
(passes/lower/collective.py).

    all_reduce(x, op="mean"|"sum")   the elementwise mean or sum of x over all
                                     processes of the job; the identity in one process

Its vjp is all_reduce of the cotangent with the same op (the transpose of a mean
over ranks, read in the "every rank runs this graph" sense, is that mean again).
Textual IR: `%3 = all_reduce %2 {reduce="mean"} : f32[64,10]`.
"""
from __future__ import annotations

from .. import distributed
from ..node import Op, Tensor, make, register, shape_error
from ..types import is_float
from . import elementwise as ew


def _infer(inputs, attrs):
    (x,) = inputs
    if attrs.get("reduce") not in distributed.REDUCE_OPS:
        raise shape_error("all_reduce", f"op must be one of {', '.join(map(repr, distributed.REDUCE_OPS))}, "
                          f"got {attrs.get('reduce')!r}", x)
    if not is_float(x.dtype):
        raise shape_error("all_reduce", f"needs a float tensor, got dtype {x.dtype}", x)
    return x.type


def _ref(ctx, x):
    return distributed.allreduce_array(x, ctx.attrs["reduce"])


def _vjp(n, g, needs):
    return (all_reduce(g, n.attrs["reduce"]),)


register(Op("all_reduce", "special", _infer, _ref, _vjp,
            doc="elementwise mean or sum over all processes of the job; the identity in one process"))


def all_reduce(x, op: str = "mean") -> Tensor:
    """The elementwise mean (op="mean") or sum (op="sum") of `x` over all processes of
    the MPI job; in a single process, x itself."""
    return make("all_reduce", (ew.as_tensor(x),), reduce=op)
