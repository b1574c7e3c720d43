"""PyTorch-style modules:

    class Net(ng.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = [ng.nn.Dense(32, activation="relu") for _ in range(2)]
            self.head = ng.nn.Dense(10)
        def forward(self, x, training=False):
            for b in self.blocks:
                x = b(x)
            return self.head(x)

Everything assigned to attributes (layers, models, parameters, lists/tuples/dicts
of them, at any depth) is found (tree.py) and trained. Layers called inside forward
take the model's mode (dropout on while training). The model builds on the first
data it sees or on build(input_shape). Subclassing ng.nn.Model the Keras way
(super().__init__() with no inputs, then `call`) works the same.
"""
from __future__ import annotations

from .model import Model


class Module(Model):
    """Base class for models written as Python classes (PyTorch's nn.Module, Keras's
    subclassed Model): assign layers in __init__, write forward(self, x, training=False)
    (or call). compile / fit / evaluate / predict / save work as for Sequential."""

    def __init__(self, name: str | None = None):
        super().__init__(name=name)
