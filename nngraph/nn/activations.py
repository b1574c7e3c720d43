"""Activation functions by name, for `Dense(..., activation="relu")` and `Activation`.

Each maps a tensor to a tensor. Outputs of "softmax" are remembered as
probabilities so a "cross_entropy" loss takes their log (which the graph builder
turns into the stable log_softmax) instead of treating them as logits.
"""
from __future__ import annotations

import weakref

from .. import functional as F
from ..ops import elementwise as ew

PROBABILITIES: "weakref.WeakSet" = weakref.WeakSet()  # tensors that are softmax outputs


def _softmax(x, axis=-1):
    y = F.softmax(x, axis)
    PROBABILITIES.add(y)
    return y


ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": ew.relu,
    "sigmoid": ew.sigmoid,
    "tanh": ew.tanh,
    "softmax": _softmax,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "selu": F.selu,
    "softplus": ew.softplus,
    "step": ew.step,
}

# the course's initialiser for each activation (Dense/Conv2D use it when none is given)
INITIALIZER_FOR = {"relu": "he_uniform", "leaky_relu": "he_uniform", "elu": "he_uniform",
                   "selu": "lecun_normal"}


def get(activation, **kwargs):
    """A callable for a name (None means linear), or the callable itself."""
    if activation is None:
        return ACTIVATIONS["linear"]
    if callable(activation):
        return activation
    fn = ACTIVATIONS.get(activation)
    if fn is None:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)} "
                         "or pass a function of a tensor")
    if kwargs:
        return lambda x: fn(x, **kwargs)
    return fn


def default_initializer(activation) -> str:
    return INITIALIZER_FOR.get(activation, "glorot_uniform") if isinstance(activation, str) else "glorot_uniform"
