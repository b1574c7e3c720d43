"""Weight initialisers (`ng.init`): each returns a float32 ndarray for ng.parameter.

Variances follow the course notes, with n the layer's inputs (fan-in) and m its
neurons (fan-out):

    LeCun  var = 1/n        (SELU, sigmoid-like units)
    Glorot var = 2/(n+m)    (none, tanh, logistic, softmax)
    He     var = 2/n        (ReLU, leaky ReLU)

The normal variants draw N(0, sqrt(var)); the uniform ones draw U(-a, a) with
a = sqrt(3 var), which has the same variance. For a convolution kernel
[O, C, KH, KW] fan-in is C*KH*KW and fan-out O*KH*KW (as PyTorch and Keras); a
dense kernel is [n, m] (inputs by units, as `x @ W` wants it).

Every function takes `seed` (an int) or `rng` (a numpy Generator) so runs repeat.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["fans", "lecun_normal", "lecun_uniform", "glorot_normal", "glorot_uniform", "he_normal",
           "he_uniform", "normal", "uniform", "orthogonal", "zeros", "ones", "get"]


def _rng(seed=None, rng=None) -> np.random.Generator:
    if rng is not None and seed is not None:
        raise ValueError("give seed or rng, not both")
    if rng is not None:
        return rng
    return np.random.default_rng(seed)


def _shape(shape) -> tuple:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(isinstance(s, (int, np.integer)) and s >= 0 for s in shape):
        raise ValueError(f"an initialiser needs a static shape of non-negative ints, got {shape}")
    return tuple(int(s) for s in shape)


def fans(shape) -> tuple[int, int]:
    """(fan_in n, fan_out m) of a weight of this shape: [n] or [n, m] for dense
    layers, [O, C, *kernel] for convolutions."""
    shape = _shape(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def _normal(shape, std, seed, rng, dtype):
    return _rng(seed, rng).normal(0.0, std, _shape(shape)).astype(dtype)


def _uniform(shape, bound, seed, rng, dtype):
    return _rng(seed, rng).uniform(-bound, bound, _shape(shape)).astype(dtype)


def _variance(kind: str, shape) -> float:
    n, m = fans(shape)
    if min(n, m) <= 0:
        raise ValueError(f"{kind} initialisation of a weight of shape {tuple(shape)} with no inputs")
    return {"lecun": 1.0 / n, "glorot": 2.0 / (n + m), "he": 2.0 / n}[kind]


def lecun_normal(shape, seed=None, rng=None, dtype="float32") -> np.ndarray:
    """N(0, sqrt(1/n))."""
    return _normal(shape, math.sqrt(_variance("lecun", shape)), seed, rng, dtype)


def lecun_uniform(shape, seed=None, rng=None, dtype="float32") -> np.ndarray:
    """U(-sqrt(3/n), sqrt(3/n))."""
    return _uniform(shape, math.sqrt(3 * _variance("lecun", shape)), seed, rng, dtype)


def glorot_normal(shape, seed=None, rng=None, dtype="float32") -> np.ndarray:
    """N(0, sqrt(2/(n+m))) (Xavier)."""
    return _normal(shape, math.sqrt(_variance("glorot", shape)), seed, rng, dtype)


def glorot_uniform(shape, seed=None, rng=None, dtype="float32") -> np.ndarray:
    """U(-sqrt(6/(n+m)), sqrt(6/(n+m))) (Xavier)."""
    return _uniform(shape, math.sqrt(3 * _variance("glorot", shape)), seed, rng, dtype)


def he_normal(shape, seed=None, rng=None, dtype="float32") -> np.ndarray:
    """N(0, sqrt(2/n)) (Kaiming)."""
    return _normal(shape, math.sqrt(_variance("he", shape)), seed, rng, dtype)


def he_uniform(shape, seed=None, rng=None, dtype="float32") -> np.ndarray:
    """U(-sqrt(6/n), sqrt(6/n)) (Kaiming)."""
    return _uniform(shape, math.sqrt(3 * _variance("he", shape)), seed, rng, dtype)


def normal(shape, std=0.05, mean=0.0, seed=None, rng=None, dtype="float32") -> np.ndarray:
    """N(mean, std)."""
    return (_rng(seed, rng).normal(mean, std, _shape(shape))).astype(dtype)


def uniform(shape, low=-0.05, high=0.05, seed=None, rng=None, dtype="float32") -> np.ndarray:
    """U(low, high)."""
    return _rng(seed, rng).uniform(low, high, _shape(shape)).astype(dtype)


def orthogonal(shape, gain=1.0, seed=None, rng=None, dtype="float32") -> np.ndarray:
    """A (semi-)orthogonal matrix [rows, cols] (Saxe et al.; Keras' default for recurrent
    kernels): repeated products with it neither grow nor shrink a vector, so a
    recurrent state neither explodes nor vanishes at the start of training."""
    rows, cols = _shape(shape)[0], int(np.prod(_shape(shape)[1:]))
    a = _rng(seed, rng).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))   # a uniform draw over orthogonal matrices
    q = q if rows >= cols else q.T
    return (gain * q).reshape(_shape(shape)).astype(dtype)


def zeros(shape, seed=None, rng=None, dtype="float32") -> np.ndarray:
    return np.zeros(_shape(shape), dtype)


def ones(shape, seed=None, rng=None, dtype="float32") -> np.ndarray:
    return np.ones(_shape(shape), dtype)


def get(name_or_fn):
    """An initialiser by name ("he_normal", ...) or a callable (shape, rng=...) -> array."""
    if callable(name_or_fn):
        return name_or_fn
    fn = globals().get(name_or_fn) if isinstance(name_or_fn, str) else None
    if fn is None or name_or_fn not in __all__ or name_or_fn in ("fans", "get"):
        names = ", ".join(n for n in __all__ if n not in ("fans", "get"))
        raise ValueError(f"unknown initialiser {name_or_fn!r}; choose one of {names} or pass a callable")
    return fn
