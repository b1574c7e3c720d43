"""`model.fit(..., distributed=True)`: data-parallel training, one MPI rank per process.

It is fit (fitting.py: batches, per-epoch shuffling, callbacks, progress, validation)
with a DataParallel training: every rank runs the same loop on the same global
batches and the step trains on its shard of each:

- the same shuffling on every rank (one seed; seed=None draws one on rank 0),
  `batch_size` is the global batch and each rank takes a contiguous share of it
  (sizes differ by at most one); a global batch smaller than the job is skipped.
  With a generator of (x, y) batches, every rank's generator must yield the same
  global batches (each rank takes its share of every one);
- the training step is one compiled function whose gradients, loss and metrics are
  all_reduce'd inside it (the compiler packs them into a few buffers, written in
  place by the kernels that compute them, and calls MPI_Iallreduce from the native
  code as each bucket is ready); each rank's loss is weighted by its shard's
  share, so uneven shards average exactly like one process on the global batch;
- BatchNorm uses the global batch's statistics and Dropout different masks per rank
  (nngraph/nn/replica.py); parameters start from rank 0's values (broadcast once);
- validation is sharded and its sums reduced; callbacks run on every rank with the
  same (reduced) logs, so early stopping agrees; only rank 0 prints, writes IR dumps
  and runs the callbacks that write files (ModelCheckpoint, the training report);
- several outputs work as in one process: every score is a mean over the batch.

Every rank ends every step with bitwise-identical parameters: the all_reduce result is
the same on every rank and every rank applies the same update to it.
"""
from __future__ import annotations

import numpy as np

from .. import distributed
from ..api import placeholder
from ..autodiff import grad
from ..ops.collective import all_reduce
from ..ops import elementwise as ew
from . import fitting, replica
from .callbacks import ModelCheckpoint


def shard(idx: np.ndarray, rank: int, ranks: int) -> np.ndarray:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    lo, hi = _share(len(idx), rank, ranks)
    return idx[lo:hi]


def train_step(model, y_kinds=None):
    """The data-parallel training step for targets of `y_kinds` (as Model.compiled),
    compiled once: (inputs..., targets..., shard_weight) -> [loss, metrics...] of the
    global batch; shard_weight = this rank's examples * ranks / global batch."""
    key = ("train_distributed", y_kinds)
    if key in model._fns:
        return model._fns[key]
    model._need_compiled()
    rank, ranks = distributed.rank(), distributed.size()

    def build():
        import nngraph       # ng.compile looked up when called, as Model does (wrappers apply)
        w = placeholder((), name="shard_weight")
        with replica.building(rank, ranks, w):
            xs, ts, scores, layer_updates = model.scored_graph(True, y_kinds)
        params = model.trainable_params
        grads = [all_reduce(g, "mean") for g in grad(ew.mul(scores[0], w), params)]
        ups = model.with_layer_updates(model.optimizer.updates(params, grads), layer_updates)
        reduced = [all_reduce(ew.mul(s, w), "mean") for s in scores]
        return nngraph.compile(xs + ts + [w], reduced, updates=ups, name="train_step", target=model.target,
                          opt_level=getattr(model, "opt_level", 2),
                          check_numerics=getattr(model, "check_numerics", False),
                          dump_dir=model.dump_dir if distributed.is_main() else None)
    return model._compile(key, build)


def broadcast_parameters(model) -> None:
    """Every rank starts from rank 0's parameter values."""
    MPI = distributed.mpi()
    if MPI is None:
        return
    for p in model.params:
        p.value = MPI.COMM_WORLD.bcast(p.value if distributed.is_main() else None, root=0)


def common_seed(seed):
    """The shuffling seed every rank uses: `seed`, or for None one drawn on rank 0."""
    MPI = distributed.mpi()
    if seed is not None or MPI is None:
        return seed
    drawn = int(np.random.default_rng().integers(2 ** 63)) if distributed.is_main() else None
    return MPI.COMM_WORLD.bcast(drawn, root=0)


def _rows(arrays: list, lo: int, hi: int) -> list:
    return [a[lo:hi] for a in arrays]


def _share(n: int, rank: int, ranks: int) -> tuple:
    """(first, end) of this rank's rows of a global batch of n (as shard)."""
    return rank * n // ranks, (rank + 1) * n // ranks


class DataParallel:
    """fit's training (fitting.LocalTraining's interface) for one rank of an MPI job:
    steps on this rank's share of each global batch, validation over its share of
    the rows with the sums reduced. Parameters start from rank 0's values."""

    def __init__(self):
        self.rank, self.ranks = distributed.rank(), distributed.size()
        self.synced = False

    def step(self, model, kinds):
        fn = train_step(model, kinds)
        if not self.synced:      # after the first build: a model built from its data has parameters now
            broadcast_parameters(model)
            self.synced = True

        def run(xs, ys):
            n = len(xs[0])
            if n < self.ranks:
                return None      # a last global batch smaller than the job: nothing for some ranks
            lo, hi = _share(n, self.rank, self.ranks)
            weight = np.float32((hi - lo) * self.ranks / n)
            return [float(v) for v in fn(*_rows(xs, lo, hi), *_rows(ys, lo, hi), weight)], n
        return run

    def evaluate(self, model, X, y, batch_size: int) -> dict:
        return evaluate_sharded(model, X, y, batch_size)


def evaluate_sharded(model, X, y, batch_size: int = 256) -> dict:
    """model.evaluate over all of (X, y) (arrays or batches), each rank scoring its
    share of every batch; the sums are reduced, so every rank gets the same scores."""
    rank, ranks = distributed.rank(), distributed.size()

    def shares():
        for xs, ys, kinds in fitting.evaluation_batches(model, X, y, batch_size * ranks):
            lo, hi = _share(len(xs[0]), rank, ranks)
            if hi > lo:
                yield _rows(xs, lo, hi), _rows(ys, lo, hi), kinds
    sums, n = fitting.score_sums(model, shares())
    total = distributed.allreduce_floats(list(sums) + [n], "sum")
    if total[-1] == 0:
        raise ValueError(f"{model.name}: evaluate got no data")
    return dict(zip(model._score_names(), (np.asarray(total[:-1]) / total[-1]).tolist()))


def _writes_files(callback) -> bool:
    """A callback that writes files runs on rank 0 only (ModelCheckpoint, TrainingReport)."""
    from ..report.training import TrainingReport
    return isinstance(callback, (ModelCheckpoint, TrainingReport))


def fit_distributed(model, X, y, epochs=1, batch_size=32, validation_data=None, validation_split=0.0,
                    shuffle=True, callbacks=None, verbose=1, seed=0, steps_per_epoch=None) -> dict:
    """model.fit(..., distributed=True): fitting.fit with DataParallel training, the
    output and the file-writing callbacks on rank 0 only; returns the history."""
    main, ranks = distributed.is_main(), distributed.size()
    if batch_size < ranks:
        raise ValueError(f"{model.name}: batch_size {batch_size} (the global batch) is smaller than the "
                         f"{ranks} processes of the job; every rank needs at least one example per step")
    callbacks = [c for c in (callbacks or []) if main or not _writes_files(c)]
    return fitting.fit(model, X, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                       validation_split=validation_split, shuffle=shuffle, callbacks=callbacks,
                       verbose=verbose if main else 0, seed=common_seed(seed), steps_per_epoch=steps_per_epoch,
                       training=DataParallel())
