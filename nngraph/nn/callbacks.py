"""Callbacks for Model.fit: hooks called at the start and end of training, of each
epoch and after each batch. `model.stop_training = True` ends fit after the epoch."""
from __future__ import annotations

import math

import numpy as np


class Callback:
    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_end(self, logs=None): ...


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by min_delta for `patience` epochs;
    optionally put back the best weights."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(float(min_delta))
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.mode, self.restore_best_weights = mode, restore_best_weights

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.best_weights, self.stopped_epoch = None, 0, None, None

    def _better(self, v):
        if self.best is None:
            return True
        return v < self.best - self.min_delta if self.mode == "min" else v > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        if not logs or self.monitor not in logs:
            raise KeyError(f"EarlyStopping: no '{self.monitor}' in the epoch's logs "
                           f"({', '.join(logs or {})}); pass validation_data for val_ metrics")
        v = float(logs[self.monitor])
        if self._better(v):
            self.best, self.wait = v, 0
            if self.restore_best_weights:
                self.best_weights = {k: p.value.copy() for k, p in self.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait > self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            for k, p in self.model.state_dict().items():
                p.value = self.best_weights[k]


class LearningRateScheduler(Callback):
    """Set the optimiser's lr at the start of each epoch from schedule(epoch) (or
    schedule(epoch, lr)); the rate is a parameter, so nothing is recompiled."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.model.optimizer.lr
        try:
            new = self.schedule(epoch, float(lr.value))
        except TypeError:
            new = self.schedule(epoch)
        if not math.isfinite(new) or new < 0:
            raise ValueError(f"LearningRateScheduler: schedule gave lr={new} at epoch {epoch}")
        lr.value = np.asarray(new, np.float32)


class ModelCheckpoint(Callback):
    """Save the model's state after each epoch (or only when `monitor` improves)."""

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        self.path, self.save_best_only = path, save_best_only
        self._track = EarlyStopping(monitor, mode=mode)

    def on_train_begin(self, logs=None):
        self._track.on_train_begin()

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only:
            v = float(logs[self._track.monitor])
            if not self._track._better(v):
                return
            self._track.best = v
        self.model.save(str(self.path).format(epoch=epoch + 1, **(logs or {})))


class LambdaCallback(Callback):
    """Callbacks from plain functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...)."""

    def __init__(self, **hooks):
        for k, f in hooks.items():
            if not hasattr(Callback, k):
                raise ValueError(f"LambdaCallback: no hook named {k!r}")
            setattr(self, k, f)
