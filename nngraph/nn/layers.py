"""Layers: objects that own parameters and map a symbolic tensor to another.

A layer is built (its parameters made) the first time it sees an input, from
that input's static shape without the batch axis. `layer(x)` on a tensor
returns a tensor and remembers the call, so `Model(inputs, outputs)` can replay
the same calls in training mode (dropout on, batch norm on batch statistics) and
in inference mode. Layers that keep running state (BatchNorm) hand their state
updates to whoever builds the graph (`collect_updates`), or keep them in
`layer.updates` for a hand-written training loop.
"""
from __future__ import annotations

import itertools
import weakref
from collections import defaultdict

import numpy as np

from .. import functional as F
from .. import init as _init
from ..api import parameter
from ..errors import ShapeError
from ..node import Parameter, Tensor, make
from ..ops import contraction as ct
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..ops.conv import conv2d
from ..ops.pool import avg_pool2d, max_pool2d
from ..types import Dim, np_dtype
from . import activations as act
from . import regularizers, replica

# output tensor -> (layer, input tensor, or a tuple of them for a layer of several
# inputs such as attention): the functional calls, replayed by Model
CALLS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def call_inputs(x) -> tuple:
    """The input tensors of a recorded call, as a tuple."""
    return tuple(x) if isinstance(x, tuple) else (x,)
_counters: dict = defaultdict(itertools.count)
_collectors: list = []
_modes: list = []  # training flags of the model or layer whose forward is being traced
_default_rng = [np.random.default_rng(0)]


def default_rng(seed=None) -> np.random.Generator:
    """The generator a layer initialises its parameters from: its own seed's, else the
    shared one that set_seed seeds."""
    return np.random.default_rng(seed) if seed is not None else _default_rng[0]


def set_seed(seed: int) -> None:
    """Seed the generator that initialises layers built without their own seed."""
    _default_rng[0] = np.random.default_rng(seed)


class collect_updates:
    """Context: state updates that layers make while a graph is built go into `.updates`."""

    def __enter__(self):
        self.updates = {}
        _collectors.append(self.updates)
        return self

    def __exit__(self, *exc):
        _collectors.pop()


class tracing_mode:
    """Context: layers called with training=None inside it (a module's or a layer's
    forward calling its sublayers) take this mode instead of inference."""

    def __init__(self, training: bool):
        self.training = bool(training)

    def __enter__(self):
        _modes.append(self.training)
        return self

    def __exit__(self, *exc):
        _modes.pop()


def current_mode():
    """The training flag of the forward being traced, or None outside any."""
    return _modes[-1] if _modes else None


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() and i and not name[i - 1].isupper() else c.lower()
                  for i, c in enumerate(name))
    return out.replace("2_d", "2d")


class Layer:
    """Base class. Subclasses define build(input_shape, rng) and forward(x, training).
    A subclass may also assign other layers (or lists/dicts of them) to attributes
    and call them in its forward: their parameters are its parameters."""

    _holds_parameters = True
    _is_layer = True

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj._init_args = (args, kwargs)  # the architecture as data (see nn/config.py)
        return obj

    def __init__(self, name: str | None = None, seed: int | None = None):
        base = _snake(type(self).__name__)
        self.name = name or f"{base}_{next(_counters[base]) + 1}"
        self.seed = seed
        self.params: dict[str, Parameter] = {}
        self.regularizers: dict = {}
        self.updates: dict = {}
        self.built = False
        self.input_shape = None   # without the batch axis
        self.output_shape = None

    # ---------------------------------------------------------------- parameters
    def add_param(self, pname: str, value, trainable: bool = True, regularizer=None) -> Parameter:
        """A parameter of this layer; `regularizer` (e.g. ng.nn.l2(1e-4)) adds its
        penalty to the training loss of any model that holds the layer."""
        p = parameter(np.asarray(value, np.float32), name=f"{self.name}.{pname}", trainable=trainable)
        self.params[pname] = p
        if regularizer is not None:
            self.regularizers[pname] = regularizers.get(regularizer)
        return p

    def penalties(self) -> list:
        """The regularisation terms of this layer's own parameters (tensors)."""
        return [reg(self.params[k]) for k, reg in self.regularizers.items()]

    def named_parameters(self) -> dict:
        """{"W": ..., "sublayer.W": ...}: this layer's parameters and those of layers
        assigned to its attributes (recursively)."""
        from .tree import named_parameters
        return named_parameters(self)

    def parameters(self) -> list:
        return list(self.named_parameters().values())

    def add_update(self, p: Parameter, value) -> None:
        """A state update (running statistics) for the compiled function's `updates`."""
        target = _collectors[-1] if _collectors else self.updates
        target[p] = value

    @property
    def trainable_params(self) -> list:
        return [p for p in self.params.values() if p.trainable]

    def count_params(self) -> int:
        return int(sum(p.value.size for p in self.named_parameters().values()))

    # ---------------------------------------------------------------- calling
    def build(self, input_shape: tuple, rng: np.random.Generator) -> None:
        """Make the parameters for inputs of this shape (no batch axis)."""

    def forward(self, x: Tensor, training: bool) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def shape_for_parameters(self, shape: tuple) -> tuple:
        """The part of an input's shape (no batch axis) that the parameters depend on; it
        must be static. All of it by default; sequence layers (Embedding, recurrent,
        attention) need only the feature axis, so their time axis may be dynamic."""
        return shape

    def ensure_built(self, x: Tensor, rng=None) -> None:
        shape = tuple(x.shape[1:])
        key = self.shape_for_parameters(shape)
        if any(isinstance(s, Dim) for s in key):
            what = "the batch axis" if key == shape else "the feature axis"
            raise ValueError(f"{self.name}: needs a static shape except {what}, got {x.type}")
        if not self.built:
            self.build(shape, rng if rng is not None else default_rng(self.seed))
            self.input_shape, self.built = shape, True
        elif key != self.shape_for_parameters(self.input_shape) and self.named_parameters():  # a stateless
            # layer (pooling, dropout) may be reused on any shape, as PyTorch code does with one self.pool
            raise ValueError(f"{self.name}: was built for inputs [N,{','.join(map(str, self.input_shape))}], "
                             f"now called on {x.type}")

    def __call__(self, x, training: bool | None = None, rng=None) -> Tensor:
        """Apply to a symbolic tensor. With training=None the call is remembered for
        Model(inputs, outputs), which rebuilds it in each mode; this graph is the
        inference one."""
        x = ew.as_tensor(x)
        if x.ndim == 0:
            raise ValueError(f"{self.name}: inputs need a batch axis, got a scalar")
        traced = training is None and current_mode() is not None
        mode = current_mode() if traced else bool(training)
        self.ensure_built(x, rng)
        with tracing_mode(mode):
            y = self.forward(x, mode)
        self.output_shape = tuple(y.shape[1:])
        if training is None and not traced:
            if y is x:  # an identity in this mode (dropout at inference): the call needs its own node
                y = make("mul", (x, ew.constant(np.asarray(1, np_dtype(x.dtype)))), canonical=False)
            CALLS[y] = (self, x)
        return y

    # ---------------------------------------------------------------- training a layer directly
    def _as_model(self):
        """The Sequential([self]) that compile/fit/evaluate/predict/save of a layer use."""
        if getattr(self, "_trainer", None) is None:
            import nngraph.nn as nn  # the package face: the layer module does not import models
            self._trainer = nn.Sequential([self], name=self.name)
        return self._trainer

    def compile(self, *args, **kwargs):
        """A layer (a custom one holding others, say) trains like a model: compile, fit,
        evaluate, predict and save go to a Sequential holding just this layer."""
        self._as_model().compile(*args, **kwargs)
        return self

    def fit(self, *args, **kwargs):
        return self._as_model().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        return self._as_model().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        return self._as_model().predict(*args, **kwargs)

    def save(self, path):
        self._as_model().save(path)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


def _initial(init, activation, shape, rng):
    name = init if init is not None else act.default_initializer(activation)
    return _init.get(name)(shape, rng=rng)


class Dense(Layer):
    """y = activation(x @ W + b), W: [inputs, units]. With no kernel_initializer the
    course's choice for the activation is used (He for ReLU-like, LeCun for SELU,
    Glorot otherwise)."""

    def __init__(self, units: int, activation=None, use_bias: bool = True, kernel_initializer=None,
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, name=None, seed=None):
        super().__init__(name, seed)
        if int(units) < 1:
            raise ValueError(f"Dense: units must be >= 1, got {units}")
        self.units, self.activation, self.use_bias = int(units), activation, use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self._act = act.get(activation)

    def ensure_built(self, x, rng=None):
        if x.ndim not in (2, 3):  # the usual slip: a conv stack straight into Dense
            got = "(" + ", ".join(map(str, x.shape)) + ")"
            hint = ": add Flatten() before it" if x.ndim > 3 else ""
            raise ShapeError(f"{self.name}: Dense expects 2-d input (batch, features), or 3-d (batch, time, "
                             f"features) for sequences, got {got}{hint}")
        super().ensure_built(x, rng)

    def shape_for_parameters(self, shape):
        return tuple(shape[-1:])   # W is [features, units]: the time axis of a sequence may be dynamic

    def build(self, input_shape, rng):
        n = input_shape[-1]
        self.add_param("W", _initial(self.kernel_initializer, self.activation, (n, self.units), rng),
                       regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_param("b", _init.get(self.bias_initializer)((self.units,), rng=rng),
                           regularizer=self.bias_regularizer)

    def forward(self, x, training):
        y = ct.matmul(x, self.params["W"])
        if self.use_bias:
            y = y + self.params["b"]
        return self._act(y)


class Conv2D(Layer):
    """2-d convolution of NCHW inputs by [filters, C, k, k] kernels, plus bias and activation.
    padding: an int, a pair, "valid" or "same"."""

    def __init__(self, filters: int, kernel_size, stride=1, padding=0, dilation=1, activation=None,
                 use_bias: bool = True, kernel_initializer=None, bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, name=None, seed=None):
        super().__init__(name, seed)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.filters = int(filters)
        self.kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.activation, self.use_bias = activation, use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self._act = act.get(activation)

    def build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: {type(self).__name__} needs inputs [N, C, H, W], "
                             f"got [N,{','.join(map(str, input_shape))}]")
        shape = self._weight_shape(input_shape[0])
        self.add_param("W", _initial(self.kernel_initializer, self.activation, shape, rng),
                       regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_param("b", _init.get(self.bias_initializer)((self.filters,), rng=rng),
                           regularizer=self.bias_regularizer)

    def _weight_shape(self, channels: int) -> tuple:
        """OIHW: [filters, C, k, k]."""
        return (self.filters, channels) + self.kernel_size

    def _convolve(self, x):
        return conv2d(x, self.params["W"], stride=self.stride, padding=self.padding, dilation=self.dilation)

    def forward(self, x, training):
        y = self._convolve(x)
        if self.use_bias:
            y = y + mv.reshape(self.params["b"], (1, self.filters, 1, 1))
        return self._act(y)


class _Pool2D(Layer):
    def __init__(self, pool_size=2, stride=None, padding=0, name=None):
        super().__init__(name)
        self.pool_size, self.stride, self.padding = pool_size, stride, padding


class MaxPool2D(_Pool2D):
    """Max over pool_size windows of NCHW inputs (stride defaults to pool_size)."""

    def forward(self, x, training):
        return max_pool2d(x, self.pool_size, self.stride, self.padding)


class AvgPool2D(_Pool2D):
    """Mean over pool_size windows of NCHW inputs (stride defaults to pool_size)."""

    def forward(self, x, training):
        return avg_pool2d(x, self.pool_size, self.stride, self.padding)


class Flatten(Layer):
    """[N, ...] -> [N, prod(...)]."""

    def forward(self, x, training):
        return mv.flatten(x, 1)


class Activation(Layer):
    """An activation by name ("relu", "softmax", "leaky_relu", ...), with its options
    (alpha for leaky_relu and elu)."""

    def __init__(self, activation, name=None, **kwargs):
        super().__init__(name)
        self.activation = activation
        self._act = act.get(activation, **kwargs)

    def forward(self, x, training):
        return self._act(x)


class Dropout(Layer):
    """Inverted dropout: in training each value is zeroed with probability `rate` and
    the rest scaled by 1/(1 - rate); at inference the layer is the identity. The mask
    changes on every call of the compiled function."""

    def __init__(self, rate: float, name=None, seed=None):
        super().__init__(name, seed)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def forward(self, x, training):
        return F.dropout(x, self.rate, training=training, seed=replica.seed(self.seed))


class BatchNorm(Layer):
    """Batch normalisation over every axis but `axis` (1: features of [N, F], channels
    of [N, C, H, W]): y = gamma (x - mean) / sqrt(var + eps) + beta.

    Training uses the batch's mean and biased variance and updates the running ones
    (PyTorch's rule: running <- (1 - momentum) running + momentum batch, with the
    unbiased variance n/(n-1) var); inference uses the running statistics."""

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, axis: int = 1, name=None):
        super().__init__(name)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1], got {momentum}")
        if axis == 0:
            raise ValueError("BatchNorm: axis 0 is the batch axis")
        self.momentum, self.eps, self.axis = float(momentum), float(eps), int(axis)

    def build(self, input_shape, rng):
        nd = len(input_shape) + 1
        axis = self.axis % nd
        if axis == 0:
            raise ValueError(f"{self.name}: axis {self.axis} is the batch axis")
        c = input_shape[axis - 1]
        self.add_param("gamma", np.ones(c, np.float32))
        self.add_param("beta", np.zeros(c, np.float32))
        self.add_param("running_mean", np.zeros(c, np.float32), trainable=False)
        self.add_param("running_var", np.ones(c, np.float32), trainable=False)

    def forward(self, x, training):
        p = self.params
        axis = self.axis % x.ndim
        if not training:
            return F.batch_norm(x, p["gamma"], p["beta"], p["running_mean"], p["running_var"], axis, self.eps)
        others = tuple(i for i in range(x.ndim) if i != axis)
        mean, var, n = replica.moments(x, others)   # the global batch's in a data-parallel step
        unbiased = var * (n / ew.maximum(n - 1.0, 1.0))
        m = self.momentum
        self.add_update(p["running_mean"], (1.0 - m) * p["running_mean"] + m * ew.stop_gradient(mean))
        self.add_update(p["running_var"], (1.0 - m) * p["running_var"] + m * ew.stop_gradient(unbiased))
        return F.batch_norm(x, p["gamma"], p["beta"], mean, var, axis, self.eps)


def Input(shape, name: str = "x", dtype="float32", batch: str = "N") -> Tensor:
    """A placeholder for a batch of inputs of `shape` (without the batch axis)."""
    from ..api import placeholder
    return placeholder((batch,) + tuple(shape), dtype=dtype, name=name)
