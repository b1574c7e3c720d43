"""Layers for autoencoders, residual and multi-branch models: Conv2DTranspose,
UpSampling2D, GlobalAvgPool2D, LayerNorm, Reshape, and the merge layers Add and
Concatenate (Keras' names and arguments; batch axis first).

Add and Concatenate take a list of tensors. They own no parameters and behave the
same in training and inference, so they are plain graph functions: a functional
Model replays the nodes they make like any other op.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..node import Tensor
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..ops import reduce as rd
from ..ops.conv import conv_transpose2d
from ..ops.upsample import upsample2d
from .layers import Conv2D, Layer


class Conv2DTranspose(Conv2D):
    """The transposed convolution of NCHW inputs (an upsampling convolution, as in conv
    autoencoders): weights W: [C, filters, k, k] (IOHW, PyTorch's layout), then bias and
    activation. Output size (H - 1) * stride - 2 * padding + k + output_padding.
    Its arguments are Conv2D's (no dilation) plus output_padding."""

    def __init__(self, filters: int, kernel_size, stride=1, padding=0, output_padding=0, activation=None,
                 use_bias: bool = True, kernel_initializer=None, bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, name=None, seed=None):
        if int(filters) < 1:
            raise ValueError(f"Conv2DTranspose: filters must be >= 1, got {filters}")
        super().__init__(filters, kernel_size, stride=stride, padding=padding, dilation=1, activation=activation,
                         use_bias=use_bias, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, name=name, seed=seed)
        self.output_padding = output_padding

    def _weight_shape(self, channels: int) -> tuple:
        """IOHW: [C, filters, k, k], PyTorch's ConvTranspose2d layout."""
        return (channels, self.filters) + self.kernel_size

    def _convolve(self, x):
        return conv_transpose2d(x, self.params["W"], self.stride, self.padding, self.output_padding)


class UpSampling2D(Layer):
    """Nearest-neighbour upsampling of NCHW inputs by `scale` (an int or a pair;
    Keras calls it `size`)."""

    def __init__(self, scale=2, name=None, size=None):
        super().__init__(name)
        self.scale = size if size is not None else scale

    def forward(self, x, training):
        return upsample2d(x, self.scale)


class GlobalAvgPool2D(Layer):
    """[N, C, H, W] -> [N, C]: the mean of each channel."""

    def forward(self, x, training):
        if x.ndim != 4:
            raise ValueError(f"{self.name}: GlobalAvgPool2D needs inputs [N, C, H, W], got {x.type}")
        return rd.mean(x, (2, 3))


class LayerNorm(Layer):
    """Normalise each example over `axis` (default the last), then scale by gamma and shift
    by beta (learned, one per normalised element): PyTorch's LayerNorm over the trailing
    axes, Keras' LayerNormalization."""

    def __init__(self, axis=-1, eps: float = 1e-5, name=None):
        super().__init__(name)
        self.axis, self.eps = axis, float(eps)

    def _axes(self, ndim: int) -> tuple:
        axes = tuple(a % ndim for a in ((self.axis,) if isinstance(self.axis, int) else self.axis))
        if 0 in axes:
            raise ValueError(f"{self.name}: axis {self.axis} includes the batch axis")
        return axes

    def shape_for_parameters(self, shape):
        """Only the normalised axes size gamma and beta (a sequence's time axis may be dynamic)."""
        return tuple(shape[a - 1] for a in self._axes(len(shape) + 1))

    def build(self, input_shape, rng):
        axes = self._axes(len(input_shape) + 1)
        shape = tuple(input_shape[a - 1] if a in axes else 1 for a in range(min(axes), len(input_shape) + 1))
        self.add_param("gamma", np.ones(shape, np.float32))
        self.add_param("beta", np.zeros(shape, np.float32))

    def forward(self, x, training):
        return F.layer_norm(x, self.params["gamma"], self.params["beta"], self._axes(x.ndim), self.eps)


class Reshape(Layer):
    """[N, ...] -> [N, *shape] (`shape` without the batch axis; one entry may be -1)."""

    def __init__(self, shape, name=None):
        super().__init__(name)
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x, training):
        return mv.reshape(x, (x.shape[0],) + self.shape)


class _Merge(Layer):
    """A parameter-free layer over a list of tensors."""

    def __call__(self, xs, training=None, rng=None) -> Tensor:
        if isinstance(xs, Tensor) or len(xs) < 2:
            raise ValueError(f"{self.name}: {type(self).__name__} takes a list of at least two tensors")
        xs = [ew.as_tensor(x) for x in xs]
        y = self.merge(xs)
        self.input_shape, self.output_shape, self.built = tuple(xs[0].shape[1:]), tuple(y.shape[1:]), True
        return y

    def merge(self, xs: list) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Add(_Merge):
    """The elementwise sum of its inputs (a residual connection)."""

    def merge(self, xs):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y


class Concatenate(_Merge):
    """Join the inputs along `axis` (counted with the batch axis, default the last)."""

    def __init__(self, axis: int = -1, name=None):
        super().__init__(name)
        self.axis = int(axis)

    def merge(self, xs):
        if self.axis % xs[0].ndim == 0:
            raise ValueError(f"{self.name}: cannot concatenate along the batch axis")
        return mv.concatenate(xs, self.axis % xs[0].ndim)
