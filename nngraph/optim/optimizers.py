"""Optimisers: each turns (params, grads) into the update graph of one training step.

The state (velocities, moments, the step counter) and the learning rate are
non-trainable parameters the optimiser owns, so one compiled call does forward,
backward and update, and a schedule changes the rate by setting `lr.value` (no
recompile). Weight decay is L2 regularisation added to the gradient,
g <- g + weight_decay * w (PyTorch's definition). Every optimiser also takes Keras's
clipvalue= and clipnorm= (clipping.py), applied to each gradient before the decay.

Formulas: SGD with momentum, AdaGrad and RMSProp as the course notes write them;
Nesterov, AdaDelta and Adam, which the notes do not spell out, as PyTorch
defines them. Each class docstring gives its update.
"""
from __future__ import annotations

import numpy as np

from ..api import parameter
from ..autodiff import grad as _grad
from ..node import Parameter, Tensor
from ..ops import elementwise as ew
from . import clipping
from .schedules import Schedule


class Optimizer:
    """Base: owns `lr` (a scalar parameter), `iterations` (steps taken) and per-weight slots."""

    def __init__(self, lr, weight_decay: float = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None):
        self.clipnorm, self.clipvalue = clipping.check(clipnorm, clipvalue)
        self.schedule = lr if isinstance(lr, Schedule) else None
        lr0 = self.schedule(0) if self.schedule is not None else float(lr)
        if lr0 < 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be >= 0, got {lr0}")
        if weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0, got {weight_decay}")
        self.weight_decay = float(weight_decay)
        self.lr = parameter(np.asarray(lr0, np.float32), name="lr", trainable=False)
        self.iterations = parameter(np.asarray(0, np.int32), name="iterations", trainable=False)
        self._slots: dict = {}

    # ---------------------------------------------------------------- state
    def slot(self, p: Parameter, kind: str, fill: float = 0.0) -> Parameter:
        """The optimiser's state `kind` for weight p (made once, zeros unless fill)."""
        key = (id(p), kind)
        if key not in self._slots:
            self._slots[key] = (p, parameter(np.full(p.value.shape, fill, p.value.dtype),
                                             name=f"{p.name or 'param'}.{kind}", trainable=False))
        return self._slots[key][1]

    def state(self) -> list:
        """Every parameter the optimiser owns (lr, step counter, slots)."""
        return [self.lr, self.iterations] + [s for _, s in self._slots.values()]

    # ---------------------------------------------------------------- graphs
    def updates(self, params, grads) -> dict:
        """{parameter: new value} for the weights and the optimiser's state."""
        params, grads = list(params), list(grads)
        if len(params) != len(grads):
            raise ValueError(f"{type(self).__name__}: {len(params)} parameters but {len(grads)} gradients")
        out = {}
        for p, g in zip(params, grads):
            if not isinstance(p, Parameter):
                raise TypeError(f"{type(self).__name__}: can only update parameters, got {p!r}")
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"{type(self).__name__}: gradient of {p.name} has shape {g.shape}, "
                                 f"the parameter {p.shape}")
            g = clipping.clip(g, self.clipnorm, self.clipvalue)
            if self.weight_decay:
                g = g + self.weight_decay * p
            out.update(self.update_one(p, g))
        out[self.iterations] = self.iterations + np.asarray(1, np.int32)
        return out

    def minimize(self, loss: Tensor, params) -> dict:
        """updates() for the gradients of `loss` with respect to `params`."""
        params = list(params)
        return self.updates(params, _grad(loss, params))

    def update_one(self, p, g) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    # ---------------------------------------------------------------- schedules
    def begin(self, total_steps: int, steps_per_epoch: int) -> None:
        if self.schedule is not None:
            self.schedule.begin(total_steps, steps_per_epoch)

    def on_step(self, step: int, epoch: int) -> None:
        """Set lr for the coming step from the schedule, if there is one."""
        if self.schedule is not None:
            t = step if self.schedule.per == "step" else epoch
            self.lr.value = np.asarray(self.schedule(t), np.float32)

    def _step_float(self):
        """t + 1 as float32: the number of the step being taken (1 for the first)."""
        return ew.cast(self.iterations, "float32") + 1.0


class SGD(Optimizer):
    """Gradient descent; with momentum alpha (the course's form):
        v <- alpha v - lr g;   w <- w + v
    and with nesterov=True (PyTorch's Nesterov, written for this v):
        w <- w + alpha v_new - lr g
    For a constant lr these equal PyTorch's SGD(momentum, nesterov) exactly."""

    def __init__(self, lr=0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0, **clip):
        super().__init__(lr, weight_decay, **clip)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def update_one(self, p, g):
        if self.momentum == 0.0:
            return {p: p - self.lr * g}
        v = self.slot(p, "velocity")
        v_new = self.momentum * v - self.lr * g
        w_new = p + self.momentum * v_new - self.lr * g if self.nesterov else p + v_new
        return {p: w_new, v: v_new}


class AdaGrad(Optimizer):
    """The course's AdaGrad: r <- r + g^2;  w <- w - lr g / sqrt(r + delta)."""

    def __init__(self, lr=0.01, eps: float = 1e-8, initial_accumulator: float = 0.0, weight_decay: float = 0.0,
                 **clip):
        super().__init__(lr, weight_decay, **clip)
        self.eps, self.initial_accumulator = float(eps), float(initial_accumulator)

    def update_one(self, p, g):
        r = self.slot(p, "sum_sq", self.initial_accumulator)
        r_new = r + g * g
        return {p: p - self.lr * g / ew.sqrt(r_new + self.eps), r: r_new}


class RMSProp(Optimizer):
    """The course's RMSProp: r <- rho r + (1 - rho) g^2;  w <- w - lr g / sqrt(r + delta)."""

    def __init__(self, lr=0.001, rho: float = 0.9, eps: float = 1e-8, weight_decay: float = 0.0, **clip):
        super().__init__(lr, weight_decay, **clip)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"RMSProp: rho must be in [0, 1), got {rho}")
        self.rho, self.eps = float(rho), float(eps)

    def update_one(self, p, g):
        r = self.slot(p, "mean_sq")
        r_new = self.rho * r + (1.0 - self.rho) * (g * g)
        return {p: p - self.lr * g / ew.sqrt(r_new + self.eps), r: r_new}


class AdaDelta(Optimizer):
    """PyTorch's AdaDelta (Zeiler 2012):
        v <- rho v + (1 - rho) g^2
        d <- sqrt(u + eps) / sqrt(v + eps) * g
        u <- rho u + (1 - rho) d^2
        w <- w - lr d"""

    def __init__(self, lr=1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0, **clip):
        super().__init__(lr, weight_decay, **clip)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"AdaDelta: rho must be in [0, 1), got {rho}")
        self.rho, self.eps = float(rho), float(eps)

    def update_one(self, p, g):
        v, u = self.slot(p, "mean_sq_grad"), self.slot(p, "mean_sq_delta")
        v_new = self.rho * v + (1.0 - self.rho) * (g * g)
        d = ew.sqrt(u + self.eps) / ew.sqrt(v_new + self.eps) * g
        u_new = self.rho * u + (1.0 - self.rho) * (d * d)
        return {p: p - self.lr * d, v: v_new, u: u_new}


class Adam(Optimizer):
    """PyTorch's Adam (Kingma & Ba 2015), t the step number from 1:
        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        w <- w - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)"""

    def __init__(self, lr=0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, **clip):
        super().__init__(lr, weight_decay, **clip)
        for n, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Adam: {n} must be in [0, 1), got {b}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def update_one(self, p, g):
        m, v = self.slot(p, "m"), self.slot(p, "v")
        t = self._step_float()
        m_new = self.beta1 * m + (1.0 - self.beta1) * g
        v_new = self.beta2 * v + (1.0 - self.beta2) * (g * g)
        c1 = 1.0 - ew.pow(ew.constant(np.float32(self.beta1)), t)
        c2 = 1.0 - ew.pow(ew.constant(np.float32(self.beta2)), t)
        step = self.lr * (m_new / c1) / (ew.sqrt(v_new / c2) + self.eps)
        return {p: p - step, m: m_new, v: v_new}


_BY_NAME = {"sgd": SGD, "adagrad": AdaGrad, "rmsprop": RMSProp, "adadelta": AdaDelta, "adam": Adam}


def get(opt) -> Optimizer:
    """An optimiser instance, or one with its defaults from a name ("adam", "sgd", ...)."""
    if isinstance(opt, Optimizer):
        return opt
    if isinstance(opt, str) and opt.lower() in _BY_NAME:
        return _BY_NAME[opt.lower()]()
    raise ValueError(f"unknown optimizer {opt!r}; pass an ng.optim optimiser or one of {', '.join(_BY_NAME)}")
