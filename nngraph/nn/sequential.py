"""Sequential: layers applied one after the other."""
from __future__ import annotations

import numpy as np

from .layers import Input, Layer
from .model import Model


class Sequential(Model):
    """Layers applied one after the other to inputs of `input_shape` (no batch axis).
    With no input_shape, the first fit/predict takes it from the data."""

    def __init__(self, layers=(), input_shape=None, name: str = "sequential", input_dtype="float32"):
        super().__init__(name=name)
        self._seq = []
        for layer in layers:
            self.add(layer)
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.input_dtype = input_dtype
        self.output_names = ["output"]

    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential: expected a layer, got {layer!r}")
        if any(layer is other for other in self._seq):
            raise ValueError(f"Sequential: layer {layer.name} is listed twice")
        self._seq.append(layer)
        self._reset_compiled()

    def _positional_keys(self) -> bool:
        return True

    def _architecture_kind(self) -> str:
        return "sequential"

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def build(self, input_shape) -> None:
        """Build for inputs of `input_shape` with the batch axis, as Keras: (None, 64)."""
        self.input_shape = tuple(int(s) for s in tuple(input_shape)[1:])
        self._inputs = None
        self._graph(False)

    def _make_inputs(self) -> list:
        if self.input_shape is None:
            raise ValueError(f"{self.name}: input_shape unknown; pass Sequential(..., input_shape=...) "
                             "or call fit/predict first")
        return [Input(self.input_shape, dtype=self.input_dtype)]

    @property
    def layers(self):
        return self._seq

    def _graph(self, training: bool):
        xs = self.inputs
        h = xs[0]
        for layer in self._seq:
            h = layer(h, training=training)
        self.output_names = [self._seq[-1].name] if self._seq else ["output"]  # Keras: the last layer's
        return list(xs), [h]

    def __call__(self, x, training: bool | None = None):
        for layer in self._seq:
            x = layer(x, training=training)
        return x

    def _xs(self, X):
        if self.input_shape is None:
            a = np.asarray(X[0] if isinstance(X, (list, tuple)) else X)
            self.input_shape = tuple(a.shape[1:])
        return super()._xs(X)
