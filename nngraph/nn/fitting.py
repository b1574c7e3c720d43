"""Model.fit and Model.evaluate: where the batches come from (arrays, or a generator /
iterable of (x, y) batches as Keras takes them), validation_split, the epoch loop
with callbacks and progress.

Each epoch's shuffle is drawn from (seed, epoch number over the model's life), not
from one generator per fit call, so fit(epochs=2) equals fit(epochs=1) twice, and
equals fit, save, load_model, fit: the model keeps `epochs_done` and saves it.

What one step and one validation do is fit's `training` (LocalTraining here; the
data-parallel form, one rank's share of an MPI job, is in distributed_fit.py); the
loop, the batches, their shuffling, callbacks and progress are the same for both.
"""
from __future__ import annotations

import time

import numpy as np

from .progress import EpochProgress
from .score_sums import ScoreSums, batch_logs, reads_batch_logs


def _is_batch_source(X) -> bool:
    """A generator, iterator or iterable object of batches (not arrays or lists of them)."""
    if isinstance(X, (np.ndarray, list, tuple, dict, str, bytes)) or hasattr(X, "__array__"):
        return False
    return hasattr(X, "__iter__") or hasattr(X, "__next__")


def _is_pair(item) -> bool:
    """An (x, y) batch: a 2-list/tuple whose parts are array-likes, not numbers."""
    return (isinstance(item, (list, tuple)) and len(item) == 2
            and not any(np.isscalar(part) for part in item))


def _is_list_of_batches(X, y) -> bool:
    """fit(X) / evaluate(X) with y None and X a non-empty list or tuple of (x, y) pairs:
    a batch source, not a multi-input model's list of arrays. The rule is by structure:
    every item must be a pair of array-likes (an array or a dict is never a pair), and
    y must be None (with targets given, X is always the inputs)."""
    return y is None and isinstance(X, (list, tuple)) and len(X) > 0 and all(_is_pair(b) for b in X)


def _batch_source_of(X, y) -> bool:
    """Whether fit / evaluate reads X as batches (a generator, an iterable object, or a
    list of (x, y) pairs) rather than as arrays."""
    return _is_batch_source(X) or _is_list_of_batches(X, y)


class ArraySource:
    """Batches of in-memory arrays, shuffled per epoch."""

    def __init__(self, model, X, y, batch_size: int, shuffle: bool, seed):
        if y is None:
            raise ValueError(f"{model.name}: fit(X, y) needs targets y (or X a generator of (x, y) batches)")
        self.xs = model._xs(X)
        self.ys, self.kinds = model._ys(y)
        n = len(self.xs[0])
        for a in self.ys:
            if len(a) != n:
                raise ValueError(f"{model.name}: {n} inputs but {len(a)} targets")
        if n == 0:
            raise ValueError(f"{model.name}: no training data")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.steps = -(-n // batch_size)
        self._to_device = None

    def place_on(self, fn) -> None:
        """Move the data set to where `fn` computes, once, when it fits (target="gpu": the
        batches are then gathered on the device and no step copies its batch from the host)."""
        host = self.xs + self.ys
        data = fn.to_device_if_fits(host)
        if any(d is not a for d, a in zip(data, host)):
            k = len(self.xs)
            self.xs, self.ys, self._to_device = data[:k], data[k:], fn.to_device

    def split_off(self, fraction: float) -> tuple:
        """Keep the first 1 - fraction of the rows, return the rest (Keras's validation_split)."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"validation_split must be in (0, 1), got {fraction}")
        k = int(self.n * (1.0 - fraction))
        if k < 1 or k >= self.n:
            raise ValueError(f"validation_split={fraction} of {self.n} rows leaves no training or no validation data")
        held = ([a[k:] for a in self.xs], [a[k:] for a in self.ys])
        self.xs, self.ys = [a[:k] for a in self.xs], [a[:k] for a in self.ys]
        self.n, self.steps = k, -(-k // self.batch_size)
        return held

    def batches(self, epoch_index: int):
        if self.shuffle:
            rng = np.random.default_rng(None if self.seed is None else [int(self.seed), int(epoch_index)])
            order = rng.permutation(self.n)
        else:
            order = np.arange(self.n)
        if self._to_device is not None and self.shuffle:
            order = self._to_device(order)
        for b in range(self.steps):
            # in order: a slice (a view where the data is, no gather); shuffled: a gather
            idx = order[b * self.batch_size:(b + 1) * self.batch_size] if self.shuffle else \
                slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield [a[idx] for a in self.xs], [a[idx] for a in self.ys], self.kinds


class BatchSource:
    """(x, y) batches from a generator (steps_per_epoch of them per epoch) or from an
    iterable that starts again each epoch (a plain list or tuple of (x, y) pairs, a data
    loader). fit and evaluate take a list as batches when y is None and every item is
    an (x, y) pair of array-likes (_is_list_of_batches); otherwise a list is the
    inputs of a multi-input model."""

    def __init__(self, model, data, steps_per_epoch):
        self.model, self.data, self.steps = model, data, steps_per_epoch
        self.one_shot = iter(data) is data
        self._it = iter(data) if self.one_shot else None
        self._pending = None  # a one-shot source's first batch, read to build the model

    def build_model(self) -> None:
        """Build an unbuilt model (a Module, a Sequential without input_shape) from the
        first batch's inputs, before the first step: fit needs the graph (its score
        names) before any batch is trained on. A one-shot generator's batch is kept
        and trained on first; an iterable that starts again is read anew."""
        if self.model.built:
            return
        if self.one_shot:
            self._pending = self._next(self._it, 0)
            item = self._pending
        else:
            item = self._next(iter(self.data), 0)
        if item is None:
            raise ValueError(f"{self.model.name}: the batches are empty; nothing to build the model from")
        self.model._xs(item[0])

    def _next(self, it, count: int):
        """The next (x, y) pair, or None at the end (an error for a spent generator)."""
        try:
            item = next(it)
        except StopIteration:
            if count == 0 and self.one_shot:
                raise ValueError(f"{self.model.name}: the generator of batches is exhausted; pass "
                                 "steps_per_epoch (and a generator that loops), or an iterable that "
                                 "starts again, such as a list of (x, y) batches") from None
            return None
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"{self.model.name}: a batch must be an (x, y) pair, got {type(item).__name__}")
        return item

    def batches(self, epoch_index: int):
        it = self._it if self.one_shot else iter(self.data)
        count = 0
        while self.steps is None or count < self.steps:
            if self._pending is not None:
                item, self._pending = self._pending, None
            else:
                item = self._next(it, count)
            if item is None:
                return
            xs = self.model._xs(item[0])
            ys, kinds = self.model._ys(item[1])
            count += 1
            yield xs, ys, kinds


def _source(model, X, y, batch_size, shuffle, seed, steps_per_epoch):
    if _batch_source_of(X, y):
        if y is not None:
            raise ValueError(f"{model.name}: with a generator of (x, y) batches, leave y out")
        return BatchSource(model, X, steps_per_epoch)
    return ArraySource(model, X, y, batch_size, shuffle, seed)


def _validation(model, source, validation_data, validation_split):
    if validation_split:
        if validation_data is not None:
            raise ValueError(f"{model.name}: give validation_data or validation_split, not both")
        if not isinstance(source, ArraySource):
            raise ValueError(f"{model.name}: validation_split needs arrays; with a generator pass validation_data")
        xs, ys = source.split_off(float(validation_split))
        return (xs, ys if len(ys) > 1 else ys[0])
    return validation_data


class LocalTraining:
    """How fit trains in one process: the compiled step on the whole batch, and
    validation over every row."""

    def step(self, model, kinds):
        """The step for targets of `kinds` (compiled on first use): (xs, ys) -> (the
        batch's scores, the examples they cover), or None for a batch it skips."""
        fn = model.compiled("train", kinds)
        return lambda xs, ys: (list(fn(*xs, *ys)), len(xs[0]))

    def evaluate(self, model, X, y, batch_size: int) -> dict:
        return evaluate(model, X, y, batch_size)


def _run_epoch(model, source, training, epoch, epochs, cbs, verbose, names):
    """One pass over the batches: (mean scores, progress, seconds). Scores that stay on
    the device are read once at the end (score_sums says why), unless a callback reads
    each batch's logs."""
    sums = ScoreSums(names)
    per_batch_logs = reads_batch_logs(cbs)
    progress = EpochProgress(source.steps, epoch, epochs, verbose)
    steps_taken = int(model.optimizer.iterations.value)   # read once: counted on the host below
    first_step = len(model.step_seconds)
    t0 = time.perf_counter()
    for b, (xs, ys, kinds) in enumerate(source.batches(model.epochs_done)):
        step = training.step(model, kinds)
        # schedules count steps and epochs over the model's life (saved with it), not per fit call
        model.optimizer.on_step(steps_taken, model.epochs_done)
        t = time.perf_counter()
        done = step(xs, ys)
        if done is None:
            continue
        vals, count = done
        steps_taken += 1
        model.step_seconds.append(time.perf_counter() - t)
        sums.add(vals, count)
        if per_batch_logs:
            logs = batch_logs(names, vals)
            for c in cbs:
                c.on_batch_end(b, logs)
        progress.batch_done(sums)
    if sums.seen == 0:
        raise ValueError(f"{model.name}: epoch {epoch + 1} had no batches")
    means = sums.means()
    if sums.on_device:     # the steps ran while the host queued more: give each the epoch's mean
        _spread_device_time(model.step_seconds, first_step, time.perf_counter() - t0)
    return means, progress, time.perf_counter() - t0


def _spread_device_time(step_seconds: list, first: int, epoch_seconds: float) -> None:
    """On the device a step's call returns before the step has run, so the host's time
    per call is not the step's time; the epoch's time (up to reading its scores, which
    waits for the last step) divided by its steps is."""
    n = len(step_seconds) - first
    step_seconds[first:] = [epoch_seconds / n] * n


def _validate(model, training, validation_data, batch_size: int) -> dict:
    """{"val_<score>": ...} on the validation data (arrays or batches)."""
    val = validation_data if _is_batch_source(validation_data) else tuple(validation_data)
    scores = training.evaluate(model, val, None, batch_size) if _is_batch_source(val) \
        else training.evaluate(model, val[0], val[1], batch_size)
    return {f"val_{k}": v for k, v in scores.items()}


def fit(model, X, y, epochs, batch_size, validation_data, validation_split, shuffle, callbacks, verbose, seed,
        steps_per_epoch, training=None) -> dict:
    """Model.fit (its docstring says what it does); training: how a step and a
    validation run (LocalTraining by default)."""
    model._need_compiled()
    training = training or LocalTraining()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    source = _source(model, X, y, batch_size, shuffle, seed, steps_per_epoch)
    validation_data = _validation(model, source, validation_data, validation_split)
    if isinstance(source, ArraySource) and model.target == "gpu":
        source.place_on(model.compiled("train", source.kinds))
    if isinstance(source, BatchSource):
        source.build_model()
    names = model._score_names()
    cbs = list(callbacks or [])
    for c in cbs:
        c.set_model(model)
    steps = source.steps or 1
    model.optimizer.begin(steps * epochs, steps)
    history = {k: [] for k in names}
    if validation_data is not None:
        history.update({f"val_{k}": [] for k in names})
    model.history, model.stop_training, model.step_seconds = history, False, []
    for c in cbs:
        c.on_train_begin()
    for epoch in range(epochs):
        for c in cbs:
            c.on_epoch_begin(epoch)
        logs, progress, seconds = _run_epoch(model, source, training, epoch, epochs, cbs, verbose, names)
        model.epochs_done += 1
        if validation_data is not None:
            logs.update(_validate(model, training, validation_data, max(batch_size, 256)))
        for k, v in logs.items():
            history[k].append(v)
        progress.epoch_done(logs, seconds)
        for c in cbs:
            c.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    for c in cbs:
        c.on_train_end(history)
    return history


def evaluation_batches(model, X, y, batch_size: int):
    """The (xs, ys, kinds) batches that evaluate scores: of arrays, or of a batch source."""
    model._need_compiled()
    if _batch_source_of(X, y):
        source = BatchSource(model, X, None)
        source.build_model()
        return source.batches(0)
    if y is None:
        raise ValueError(f"{model.name}: evaluate(X, y) needs targets y")
    source = ArraySource(model, X, y, batch_size, False, None)
    if model.target == "gpu":      # the data set to the device once, as fit does
        source.place_on(model.compiled("evaluate", source.kinds))
    return source.batches(0)


def score_sums(model, batches) -> tuple:
    """(per score, its sum over the rows of `batches`; the number of rows), inference mode."""
    sums = ScoreSums(model._score_names())
    for xs, ys, kinds in batches:
        sums.add(model.compiled("evaluate", kinds)(*xs, *ys), len(xs[0]))
    return np.asarray([float(s) for s in sums.sums]), sums.seen


def evaluate(model, X, y, batch_size: int) -> dict:
    """Model.evaluate: mean scores over all rows (weighted by batch size), inference mode."""
    sums, n = score_sums(model, evaluation_batches(model, X, y, batch_size))
    if n == 0:
        raise ValueError(f"{model.name}: evaluate got no data")
    return dict(zip(model._score_names(), (sums / n).tolist()))
