"""Learning-rate schedules. A schedule is a plain function of the step (or epoch)
number; the optimiser writes its value into its `lr` parameter before each step,
so changing the rate never recompiles anything.

Formulas from the course notes (t counts steps or epochs from 0, per `per`):

- StepDecay (piecewise constant): lr0 * factor ** (t // every)
- ExponentialDecay: lr0 * base ** (t / s)          (base 0.1: divided by 10 every s)
- PowerDecay: lr0 / (1 + t / s)
- OneCycle: from lr0 up linearly to lr1 (about 10 lr0) in the first half of the
  cycle, back down to lr0 in the second half, then linearly down by several orders
  of magnitude (to final_lr) over the last `final_fraction` of training.
"""
from __future__ import annotations

import math


class Schedule:
    """lr as a function of t (steps when per="step", epochs when per="epoch")."""

    per = "epoch"

    def __call__(self, t: int) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def begin(self, total_steps: int, steps_per_epoch: int) -> None:
        """Told by Model.fit how long training will be (OneCycle needs it)."""


class StepDecay(Schedule):
    def __init__(self, initial: float, factor: float = 0.5, every: int = 10, per: str = "epoch"):
        if every < 1:
            raise ValueError(f"StepDecay: every must be >= 1, got {every}")
        self.initial, self.factor, self.every, self.per = float(initial), float(factor), int(every), _per(per)

    def __call__(self, t):
        return self.initial * self.factor ** (int(t) // self.every)


class ExponentialDecay(Schedule):
    def __init__(self, initial: float, s: float, base: float = 0.1, per: str = "step"):
        if s <= 0:
            raise ValueError(f"ExponentialDecay: s must be > 0, got {s}")
        self.initial, self.s, self.base, self.per = float(initial), float(s), float(base), _per(per)

    def __call__(self, t):
        return self.initial * self.base ** (t / self.s)


class PowerDecay(Schedule):
    def __init__(self, initial: float, s: float, per: str = "step"):
        if s <= 0:
            raise ValueError(f"PowerDecay: s must be > 0, got {s}")
        self.initial, self.s, self.per = float(initial), float(s), _per(per)

    def __call__(self, t):
        return self.initial / (1.0 + t / self.s)


class OneCycle(Schedule):
    """1cycle (Smith, 2018) as the course states it. `total_steps` may be left None:
    Model.fit fills it in from epochs x batches."""

    def __init__(self, max_lr: float, total_steps: int | None = None, initial: float | None = None,
                 final_lr: float | None = None, final_fraction: float = 0.1, per: str = "step"):
        self.max_lr = float(max_lr)
        self.initial = self.max_lr / 10 if initial is None else float(initial)
        self.final_lr = self.initial / 1000 if final_lr is None else float(final_lr)
        if not 0.0 <= final_fraction < 1.0:
            raise ValueError(f"OneCycle: final_fraction must be in [0, 1), got {final_fraction}")
        self.final_fraction, self.per = float(final_fraction), _per(per)
        self.total_steps = total_steps

    def begin(self, total_steps, steps_per_epoch):
        if self.total_steps is None:
            self.total_steps = total_steps if self.per == "step" else math.ceil(total_steps / steps_per_epoch)

    def __call__(self, t):
        if t <= 0:
            return self.initial
        if self.total_steps is None:
            raise ValueError("OneCycle: total_steps is unknown; pass it, or let Model.fit set it")
        total = max(int(self.total_steps), 1)
        cycle = max(total * (1.0 - self.final_fraction), 1.0)
        half = cycle / 2
        if t <= half:
            return self.initial + (self.max_lr - self.initial) * (t / half)
        if t <= cycle:
            return self.max_lr + (self.initial - self.max_lr) * ((t - half) / half)
        rest = max(total - cycle, 1.0)
        return self.initial + (self.final_lr - self.initial) * min((t - cycle) / rest, 1.0)


def _per(per: str) -> str:
    if per not in ("step", "epoch"):
        raise ValueError(f"a schedule runs per 'step' or per 'epoch', got {per!r}")
    return per
