"""The running scores of one fit epoch (loss and metrics, weighted by batch size).

Why not `float(score)` after every step: on target="gpu" a step's scores are device
tensors, and reading one waits for the device to finish the step. The host then
cannot queue step k+1 while the device runs step k, and every step pays the
launch latency again (on an H100 a replayed MLP step takes 1.1x its kernels'
time when queued back to back, 1.3-3.4x when each call is waited for; issue 17).
So device scores are summed on the device (queued arithmetic, no wait) and read
when something needs numbers: the end of the epoch, a callback that looks at each
batch's logs (Keras calls on_batch_end with numbers), the progress bar (at most a
few times a second). NumPy scores (target="cpu"/"reference") are numbers already.
"""
from __future__ import annotations

import time

from .callbacks import Callback
from .device_data import is_device_array


def _in_float64(v):
    """A device scalar widened where it lives (a torch tensor's .double()), so that
    the sums keep float64 as the host sums do; an array without it stays as it is."""
    widen = getattr(v, "double", None)
    return widen() if callable(widen) else v


class ScoreSums:
    """Sums of `names` scores over the batches of an epoch, weighted by batch size."""

    def __init__(self, names, refresh_seconds: float = 0.25):
        self.names = list(names)
        self.sums = [0.0] * len(self.names)
        self.seen = 0
        self.on_device = False
        self.refresh_seconds = refresh_seconds
        self._shown_at = None

    def add(self, vals, count: int) -> None:
        """Add one batch's scores (numbers or device scalars) covering `count` examples."""
        for i, v in enumerate(vals):
            if is_device_array(v):
                self.on_device = True
                self.sums[i] = self.sums[i] + _in_float64(v) * count
            else:
                self.sums[i] += float(v) * count
        self.seen += count

    def means(self) -> dict:
        """{name: mean so far} as Python floats (waits for the device if sums live there)."""
        return {k: float(s) / self.seen for k, s in zip(self.names, self.sums)}

    def due_for_display(self) -> bool:
        """Whether a progress display should read the sums now: always for host sums,
        at most every refresh_seconds for device sums (each read waits for the device)."""
        if not self.on_device:
            return True
        now = time.perf_counter()
        if self._shown_at is not None and now - self._shown_at < self.refresh_seconds:
            return False
        self._shown_at = now
        return True


def batch_logs(names, vals) -> dict:
    """One batch's logs as numbers, for callbacks that read them."""
    return {k: float(v) for k, v in zip(names, vals)}


def reads_batch_logs(callbacks) -> bool:
    """Whether any callback has an on_batch_end of its own (only those need each batch's
    numbers): overridden in its class, or set on the instance (LambdaCallback's hooks)."""
    def hook(c):
        bound = c.on_batch_end
        return getattr(bound, "__func__", bound)
    return any(hook(c) is not Callback.on_batch_end for c in callbacks)
