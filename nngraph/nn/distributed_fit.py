"""`model.fit(..., distributed=True)`: data-parallel training, one MPI rank per process.

Every rank runs the same program on its shard of every global batch:

- the same shuffling on every rank (one seed), `batch_size` is the global batch and
  each rank takes a contiguous share of it (sizes differ by at most one);
- the training step is one compiled function whose gradients, loss and metrics are
  all_reduce'd inside it (the compiler packs them into a few buffers and calls
  MPI_Allreduce from the native code); each rank's loss is weighted by its shard's
  share, so uneven shards average exactly like one process on the global batch;
- BatchNorm uses the global batch's statistics and Dropout different masks per rank
  (nngraph/nn/replica.py); parameters start from rank 0's values (broadcast once);
- validation is sharded and its sums reduced; callbacks run on every rank with the
  same (reduced) logs, so early stopping agrees; only rank 0 prints, writes IR dumps
  and runs ModelCheckpoint.

Every rank ends every step with bitwise-identical parameters: the all_reduce result is
the same on every rank and every rank applies the same update to it.
"""
from __future__ import annotations

import time

import numpy as np

from .. import distributed
from ..api import placeholder
from ..autodiff import grad
from ..ops.collective import all_reduce
from ..ops import elementwise as ew
from . import replica
from .callbacks import ModelCheckpoint
from .layers import collect_updates


def shard(idx: np.ndarray, rank: int, ranks: int) -> np.ndarray:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    b = len(idx)
    return idx[rank * b // ranks:(rank + 1) * b // ranks]


def train_step(model, y_kind):
    """The data-parallel training step, compiled once per target kind:
    (inputs..., targets, shard_weight) -> [loss, metrics...] averaged over the global batch."""
    key = ("train_distributed", y_kind)
    if key in model._fns:
        return model._fns[key]
    rank, ranks = distributed.rank(), distributed.size()

    def build():
        import nngraph       # ng.compile looked up when called, as Model does (wrappers apply)
        w = placeholder((), name="shard_weight")
        with collect_updates() as c, replica.building(rank, ranks, w):
            xs, out = model.forward(True)
        t = model._targets_placeholder(out, y_kind)
        scores = model._scores(out, t)
        params = model.trainable_params
        grads = [all_reduce(g, "mean") for g in grad(ew.mul(scores[0], w), params)]
        ups = model.optimizer.updates(params, grads)
        for p, v in c.updates.items():
            if p in ups:
                raise ValueError(f"{model.name}: parameter {p.name} is updated by the optimiser and a layer")
            ups[p] = v
        reduced = [all_reduce(ew.mul(s, w), "mean") for s in scores]
        return nngraph.compile(xs + [t, w], reduced, updates=ups, name="train_step", target=model.target,
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


def evaluate_sharded(model, X, y, batch_size: int = 256) -> dict:
    """model.evaluate over all of (X, y), each rank scoring its share; sums reduced."""
    xs, (y, y_kind) = model._xs(X), model._ys(y)
    part = shard(np.arange(len(y)), distributed.rank(), distributed.size())
    names = model._score_names()
    sums = np.zeros(len(names))
    if len(part):
        fn = model.compiled("evaluate", y_kind)
        for s in range(0, len(part), batch_size):
            idx = part[s:s + batch_size]
            sums += np.asarray([float(v) for v in fn(*[a[idx] for a in xs], y[idx])]) * len(idx)
    total = distributed.allreduce_floats(list(sums) + [len(part)], "sum")
    return dict(zip(names, (np.asarray(total[:-1]) / total[-1]).tolist()))


def fit_distributed(model, X, y, epochs=1, batch_size=32, validation_data=None, shuffle=True,
                    callbacks=None, verbose=1, seed=0, progress=None) -> dict:
    """model.fit's data-parallel loop (see the module docstring); returns the history.
    progress(total, description, enabled) -> a tqdm-like bar or None: fit's own."""
    model._need_compiled()
    rank, ranks = distributed.rank(), distributed.size()
    xs, (y, y_kind) = model._xs(X), model._ys(y)
    n = model._n(xs)
    if len(y) != n or n == 0:
        raise ValueError(f"{model.name}: fit needs as many targets as inputs (>0), got {n} and {len(y)}")
    if batch_size < ranks:
        raise ValueError(f"{model.name}: batch_size {batch_size} (the global batch) is smaller than the "
                         f"{ranks} processes of the job; every rank needs at least one example per step")
    loop = _Loop(model, train_step(model, y_kind), xs, y, batch_size,
                 [c for c in (callbacks or []) if rank == 0 or not isinstance(c, ModelCheckpoint)],
                 verbose if rank == 0 else 0, progress)
    broadcast_parameters(model)
    steps = -(-n // batch_size)
    model.optimizer.begin(steps * epochs, steps)
    rng = np.random.default_rng(common_seed(seed))
    model.history = {k: [] for k in loop.names}
    if validation_data is not None:
        model.history.update({f"val_{k}": [] for k in loop.names})
    model.stop_training, model.step_seconds = False, []
    loop.each("on_train_begin")
    for epoch in range(epochs):
        loop.each("on_epoch_begin", epoch)
        t_epoch = time.perf_counter()
        logs = loop.epoch(epoch, epochs, rng.permutation(n) if shuffle else np.arange(n))
        if validation_data is not None:
            scores = evaluate_sharded(model, *validation_data, batch_size=max(batch_size, 256))
            logs.update({f"val_{k}": v for k, v in scores.items()})
        for k, v in logs.items():
            model.history[k].append(v)
        loop.report(epoch, epochs, logs, time.perf_counter() - t_epoch)
        loop.each("on_epoch_end", epoch, logs)
        if model.stop_training:
            break
    loop.each("on_train_end", model.history)
    return model.history


class _Loop:
    """One rank's share of the training loop: steps over shards, callbacks, output."""

    def __init__(self, model, step_fn, xs, y, batch_size, callbacks, verbose, progress):
        self.model, self.step_fn, self.xs, self.y = model, step_fn, xs, y
        self.batch_size, self.callbacks, self.verbose, self.progress = batch_size, callbacks, verbose, progress
        self.names = model._score_names()
        self.rank, self.ranks = distributed.rank(), distributed.size()
        self.global_step, self.bar = 0, None
        for c in callbacks:
            c.set_model(model)

    def each(self, hook: str, *args) -> None:
        for c in self.callbacks:
            getattr(c, hook)(*args)

    def epoch(self, epoch: int, epochs: int, order) -> dict:
        """Train on every global batch of `order`; the epoch's mean scores."""
        steps = -(-len(order) // self.batch_size)
        if self.progress is not None:
            self.bar = self.progress(steps, f"epoch {epoch + 1}/{epochs}", self.verbose == 1)
        sums, seen = np.zeros(len(self.names)), 0
        for b in range(steps):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            if len(batch) < self.ranks:
                continue          # a last global batch smaller than the job: nothing for some ranks
            vals = self.step(batch, epoch)
            sums, seen = sums + np.asarray(vals) * len(batch), seen + len(batch)
            self.each("on_batch_end", b, dict(zip(self.names, vals)))
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix({k: f"{v:.4f}" for k, v in zip(self.names, sums / seen)}, refresh=False)
        return dict(zip(self.names, (sums / max(seen, 1)).tolist()))

    def step(self, batch, epoch) -> list:
        """One compiled step on this rank's shard; the global batch's scores."""
        idx = shard(batch, self.rank, self.ranks)
        weight = np.float32(len(idx) * self.ranks / len(batch))
        self.model.optimizer.on_step(self.global_step, epoch)
        t0 = time.perf_counter()
        vals = [float(v) for v in self.step_fn(*[a[idx] for a in self.xs], self.y[idx], weight)]
        self.model.step_seconds.append(time.perf_counter() - t0)
        self.global_step += 1
        return vals

    def report(self, epoch, epochs, logs, seconds) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=True)
            self.bar.close()
        elif self.verbose == 2:
            print(f"epoch {epoch + 1}/{epochs} ({seconds:.2f}s): "
                  + ", ".join(f"{k}={v:.4f}" for k, v in logs.items()), flush=True)
