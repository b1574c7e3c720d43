"""What a layer does differently while a data-parallel training step is built
(`model.fit(..., distributed=True)`, nngraph/nn/distributed_fit.py):

- batch statistics are the whole global batch's: BatchNorm's mean and variance are
  all_reduce'd (two-pass, as one process computes them), weighted by the shard's
  share of the global batch, so training equals one process on the global batch;
- random masks differ per rank: Dropout's seed is mixed with the rank, otherwise
  every process would drop the same units of different examples.

Outside such a build (`active()` is None) both are exactly the single-process forms.
"""
from __future__ import annotations

import contextlib

from .. import functional as F
from ..ops import elementwise as ew
from ..ops import reduce as rd
from ..ops import movement as mv

_active: list = []


class Replica:
    """One rank's view of the step being built: its rank, the job size and the
    shard-weight placeholder (local examples * ranks / global batch; 1 for equal shards)."""

    def __init__(self, rank: int, ranks: int, weight):
        self.rank, self.ranks, self.weight = rank, ranks, weight


@contextlib.contextmanager
def building(rank: int, ranks: int, weight):
    """Layers called inside build the data-parallel forms."""
    _active.append(Replica(rank, ranks, weight))
    try:
        yield _active[-1]
    finally:
        _active.pop()


def active() -> Replica | None:
    return _active[-1] if _active else None


def moments(x, axes):
    """(mean, biased variance, element count) over `axes` of x: of this process's batch,
    or, in a data-parallel build, of the global batch (all_reduce'd)."""
    r = active()
    n = ew.numel([x.shape[i] for i in axes])
    if r is None:
        mean, var = F.moments(x, axes)
        return mean, var, n
    from ..ops.collective import all_reduce
    m = all_reduce(ew.mul(rd.mean(x, axes, keepdims=True), r.weight), "mean")
    d = ew.sub(x, m)
    v = all_reduce(ew.mul(rd.mean(ew.mul(d, d), axes, keepdims=True), r.weight), "mean")
    total = ew.div(ew.mul(n, float(r.ranks)), r.weight)
    return mv.squeeze(m, axes), mv.squeeze(v, axes), total


# odd multiplier of the golden ratio: distinct ranks give distinct, well-mixed seeds
_RANK_MIX = 0x9E3779B1


def seed(layer_seed: int | None) -> int | None:
    """The seed of a random mask: the layer's own, or in a data-parallel build one
    that differs per rank (deterministic for a given build order and rank)."""
    r = active()
    if r is None:
        return layer_seed
    from ..ops import random as rnd
    base = next(rnd._seeds) if layer_seed is None else int(layer_seed)
    return (base + r.rank * _RANK_MIX) & 0x7FFFFFFF
