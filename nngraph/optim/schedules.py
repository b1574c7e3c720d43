"""Learning-rate schedules. A schedule is a plain function of the step (or epoch)
number; the optimiser writes its value into its `lr` parameter before each step,
so changing the rate never recompiles anything.

Formulas from the course notes (t counts steps or epochs from 0, per `per`):

- StepDecay (piecewise constant): lr0 * factor ** (t // every)
- ExponentialDecay: lr0 * base ** (t / s)          (base 0.1: divided by 10 every s)
- PowerDecay: lr0 / (1 + t / s)
- OneCycle: from lr0 up linearly to lr1 (about 10 lr0) in the first half of the
  cycle, back down to lr0 in the second half, then linearly down by several orders
  of magnitude (to final_lr) over the last `final_fraction` of training; the last
  step runs at final_lr exactly. Momentum cycles the other way (max_momentum down to
  base_momentum while lr rises, back up while it falls). Step for step this is
  PyTorch's OneCycleLR(three_phase=True, anneal_strategy="linear",
  pct_start=(1 - final_fraction) / 2), momentum included.
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
    """1cycle (Smith, 2018) as the course states it, with PyTorch's step boundaries
    (three phases ending at steps pct*T - 1, 2 pct*T - 2 and T - 1, pct = (1 -
    final_fraction) / 2). `total_steps` may be left None: Model.fit fills it in from
    epochs x batches. With cycle_momentum, an optimiser with momentum (SGD with
    momentum > 0) takes its momentum from `momentum(t)` at every step."""

    cycle_momentum = True

    def __init__(self, max_lr: float, total_steps: int | None = None, initial: float | None = None,
                 final_lr: float | None = None, final_fraction: float = 0.1, per: str = "step",
                 cycle_momentum: bool = True, base_momentum: float = 0.85, max_momentum: float = 0.95):
        self.max_lr = float(max_lr)
        self.initial = self.max_lr / 10 if initial is None else float(initial)
        self.final_lr = self.initial / 1000 if final_lr is None else float(final_lr)
        if not 0.0 <= final_fraction < 1.0:
            raise ValueError(f"OneCycle: final_fraction must be in [0, 1), got {final_fraction}")
        if not 0.0 <= base_momentum <= max_momentum < 1.0:
            raise ValueError(f"OneCycle: need 0 <= base_momentum <= max_momentum < 1, got {base_momentum}, "
                             f"{max_momentum}")
        self.final_fraction, self.per = float(final_fraction), _per(per)
        self.total_steps = total_steps
        self.cycle_momentum = bool(cycle_momentum)
        self.base_momentum, self.max_momentum = float(base_momentum), float(max_momentum)

    def begin(self, total_steps, steps_per_epoch):
        if self.total_steps is None:
            self.total_steps = total_steps if self.per == "step" else math.ceil(total_steps / steps_per_epoch)

    def _phase(self, t):
        """(phase index 0..2, fraction of it done) at step t, as PyTorch computes them."""
        if self.total_steps is None:
            raise ValueError("OneCycle: total_steps is unknown; pass it, or let Model.fit set it")
        total = max(int(self.total_steps), 1)
        pct = (1.0 - self.final_fraction) / 2
        ends = (pct * total - 1, 2 * pct * total - 2, total - 1)
        start = 0.0
        for i, end in enumerate(ends):
            if t <= end or i == 2:
                frac = (t - start) / (end - start) if end > start else 1.0
                return i, min(max(frac, 0.0), 1.0)
            start = end
        raise AssertionError("unreachable")

    def __call__(self, t):
        if t <= 0:
            return self.initial
        i, frac = self._phase(t)
        a, b = ((self.initial, self.max_lr), (self.max_lr, self.initial), (self.initial, self.final_lr))[i]
        return a + (b - a) * frac

    def momentum(self, t):
        """The momentum for step t: max_momentum when lr is lowest, base_momentum at its peak."""
        if t <= 0:
            return self.max_momentum
        i, frac = self._phase(t)
        lo, hi = self.base_momentum, self.max_momentum
        a, b = ((hi, lo), (lo, hi), (hi, hi))[i]
        return a + (b - a) * frac


def _per(per: str) -> str:
    if per not in ("step", "epoch"):
        raise ValueError(f"a schedule runs per 'step' or per 'epoch', got {per!r}")
    return per
