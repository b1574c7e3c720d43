"""Recurrent layers on ng.scan: SimpleRNN, LSTM, GRU (batch first, as Keras).

Each layer maps x [N, T, F] to the last state [N, H] (or, with
return_sequences=True, every step's state [N, T, H]). T may be a dynamic size: the
loop is one `scan` node, so one compile serves every sequence length.

Weights are laid out so that PyTorch's load directly (``kernel`` is
``weight_ih_l0.T``, ``recurrent_kernel`` is ``weight_hh_l0.T``):

    SimpleRNN  h' = act(x W + h U + b)                    kernel [F, H], recurrent_kernel [H, H], bias [H]
    LSTM       i, f, g, o = split(x W + h U + b)          kernel [F, 4H], recurrent_kernel [H, 4H], bias [4H]
               c' = sigmoid(f) c + sigmoid(i) tanh(g),  h' = sigmoid(o) tanh(c')
    GRU        r, z = sigmoid(x W_rz + b_rz + h U_rz + rb_rz)   kernel [F, 3H], recurrent_kernel [H, 3H],
               n = tanh(x W_n + b_n + r (h U_n + rb_n))          bias [3H], recurrent_bias [3H]
               h' = (1 - z) n + z h                              (gates in the order r, z, n)

PyTorch keeps two biases for SimpleRNN and LSTM; their sum is ``bias``.

The input projection ``x W + b`` does not depend on the state, so it is computed
for all steps at once before the loop (one [T*N, F] x [F, kH] product on x made
time first); the loop body holds only the recurrent product and the gates.

The initial state is zeros unless given: ``layer(x, initial_state=h0)`` (a tensor
[N, H]; for LSTM a pair (h0, c0)), or ``layer.initial_state = ...`` before the
call (a placeholder fed at call time, or a parameter to learn it).
"""
from __future__ import annotations

import numpy as np

from .. import init as _init
from ..errors import ShapeError
from ..node import Tensor
from ..ops import contraction as ct
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..scan_build import scan
from ..sizes import can_join
from . import activations as act
from .layers import CALLS, Layer, current_mode, tracing_mode


class _Recurrent(Layer):
    """What the three layers share: the checks, the state, the loop over time."""

    gates = 1            # blocks of H columns in kernel and recurrent_kernel
    state_names = ("h",)

    def __init__(self, units: int, return_sequences: bool = False, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", name=None, seed=None):
        super().__init__(name, seed)
        if int(units) < 1:
            raise ValueError(f"{type(self).__name__}: units must be >= 1, got {units}")
        self.units, self.return_sequences = int(units), bool(return_sequences)
        self.kernel_initializer, self.recurrent_initializer = kernel_initializer, recurrent_initializer
        self.bias_initializer = bias_initializer
        self.initial_state = None

    def __getattr__(self, name):
        """layer.kernel, layer.recurrent_kernel, layer.bias...: the parameters by name."""
        params = self.__dict__.get("params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__} {self.__dict__.get('name', '')} has no attribute {name!r}"
                             + (" (its parameters exist once it has been called on an input)" if not params else ""))

    # ---------------------------------------------------------------- building
    def shape_for_parameters(self, shape):
        return tuple(shape[-1:])   # the features; the time axis may be dynamic

    def ensure_built(self, x, rng=None):
        if x.ndim != 3:
            raise ShapeError(f"{self.name}: {type(self).__name__} takes [batch, time, features], got "
                             f"{x.name or 'an input'} of type {x.type}")
        super().ensure_built(x, rng)

    def build(self, input_shape, rng):
        f, h, k = input_shape[-1], self.units, self.gates
        self.add_param("kernel", _init.get(self.kernel_initializer)((f, k * h), rng=rng))
        recurrent = np.concatenate([_init.get(self.recurrent_initializer)((h, h), rng=rng) for _ in range(k)], 1)
        self.add_param("recurrent_kernel", recurrent)
        self.add_param("bias", self._initial_bias(rng))

    def _initial_bias(self, rng) -> np.ndarray:
        return _init.get(self.bias_initializer)((self.gates * self.units,), rng=rng)

    # ---------------------------------------------------------------- calling
    def __call__(self, x, *states, initial_state=None, training: bool | None = None, rng=None) -> Tensor:
        """x [N, T, F] -> [N, H] (or [N, T, H]); the initial state as `initial_state=`
        (or positionally after x), else layer.initial_state, else zeros."""
        if states and initial_state is not None:
            raise TypeError(f"{self.name}: give the initial state once (positionally or as initial_state=)")
        given = list(states) if states else _as_list(initial_state)
        x = ew.as_tensor(x)
        traced = training is None and current_mode() is not None
        mode = current_mode() if traced else bool(training)
        self.ensure_built(x, rng)
        init = self._initial_states(x, given or _as_list(self.initial_state))
        with tracing_mode(mode):
            y = self.forward_with(x, init)
        self.output_shape = tuple(y.shape[1:])
        if training is None and not traced:
            CALLS[y] = (self, (x, *given)) if given else (self, x)
        return y

    def forward(self, x, training):
        return self.forward_with(x, self._initial_states(x, _as_list(self.initial_state)))

    def _initial_states(self, x, given: list) -> tuple:
        n, h = x.shape[0], self.units
        if not given:
            zero = ew.constant(np.zeros((), np.float32))
            return tuple(mv.broadcast_to(zero, (n, h)) for _ in self.state_names)
        if len(given) != len(self.state_names):
            raise ShapeError(f"{self.name}: the initial state of {type(self).__name__} is "
                             f"{len(self.state_names)} tensor(s) ({', '.join(self.state_names)}), got {len(given)}")
        out = []
        for name, s in zip(self.state_names, given):
            s = ew.as_tensor(s)
            if s.ndim != 2 or s.shape[1] != h or not can_join(s.shape[0], n) or s.dtype != "float32":
                raise ShapeError(f"{self.name}: initial state {name} must be f32[{n},{h}] (batch, units), got "
                                 f"{s.name or name} of type {s.type}")
            out.append(s)
        return tuple(out)

    def forward_with(self, x, init: tuple) -> Tensor:
        """The loop: the input projection of every step at once, then scan over time."""
        p = self.params
        # time first before the projection: the transposed copy is of x [T, N, F], not
        # of the k times wider projection, and the projection [T, N, kH] is the loop's
        # per-step input as it is, each step one contiguous [N, kH] slice
        steps = ct.matmul(mv.transpose(x, (1, 0, 2)), p["kernel"]) + p["bias"]   # [T, N, kH]
        carry = init if len(init) > 1 else init[0]
        final, ys = scan(self.step, carry, steps)
        if self.return_sequences:
            return mv.transpose(ys, (1, 0, 2))                          # [N, T, H]
        return final[0] if isinstance(final, tuple) else final

    def step(self, carry, xw):  # pragma: no cover - interface
        """(carry, this step's x W + b) -> (new carry, this step's output h)."""
        raise NotImplementedError

    def _block(self, z, i: int) -> Tensor:
        """Gate block i (columns i*H .. (i+1)*H) of z [N, kH]."""
        h = self.units
        return z[:, i * h:(i + 1) * h]


def _as_list(state) -> list:
    if state is None:
        return []
    return [state] if isinstance(state, Tensor) or not isinstance(state, (list, tuple)) else list(state)


class SimpleRNN(_Recurrent):
    """The Elman network: h' = activation(x W + h U + b), activation tanh by default
    (PyTorch's nn.RNN; its two biases summed are `bias`)."""

    def __init__(self, units: int, activation="tanh", return_sequences: bool = False, **kwargs):
        super().__init__(units, return_sequences, **kwargs)
        self.activation = activation
        self._act = act.get(activation)

    def step(self, h, xw):
        h2 = self._act(xw + ct.matmul(h, self.params["recurrent_kernel"]))
        return h2, h2


class LSTM(_Recurrent):
    """Long short-term memory, PyTorch's equations and gate order (input, forget,
    cell, output). The forget gate's bias starts at 1 (unit_forget_bias, as Keras)
    so that the cell remembers from the start of training."""

    gates = 4
    state_names = ("h", "c")

    def __init__(self, units: int, return_sequences: bool = False, unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, return_sequences, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _initial_bias(self, rng):
        b = super()._initial_bias(rng)
        if self.unit_forget_bias:
            b[self.units:2 * self.units] = 1.0
        return b

    def step(self, carry, xw):
        h, c = carry
        z = xw + ct.matmul(h, self.params["recurrent_kernel"])
        i, f, g, o = (self._block(z, k) for k in range(4))
        c2 = ew.sigmoid(f) * c + ew.sigmoid(i) * ew.tanh(g)
        h2 = ew.sigmoid(o) * ew.tanh(c2)
        return (h2, c2), h2


class GRU(_Recurrent):
    """Gated recurrent unit, PyTorch's equations (reset applied to the recurrent
    product, Keras' reset_after=True) and gate order (reset, update, new); `bias` is
    PyTorch's bias_ih_l0 and `recurrent_bias` its bias_hh_l0."""

    gates = 3

    def build(self, input_shape, rng):
        super().build(input_shape, rng)
        self.add_param("recurrent_bias", self._initial_bias(rng))

    def step(self, h, xw):
        hu = ct.matmul(h, self.params["recurrent_kernel"]) + self.params["recurrent_bias"]
        r = ew.sigmoid(self._block(xw, 0) + self._block(hu, 0))
        z = ew.sigmoid(self._block(xw, 1) + self._block(hu, 1))
        n = ew.tanh(self._block(xw, 2) + r * self._block(hu, 2))
        h2 = (1.0 - z) * n + z * h
        return h2, h2

