"""Counter-based random numbers: the same (seed, counter, index) gives the same
value on every backend, with no generator state to carry between kernels.

    key = hash32(seed * 0x9E3779B9 + counter * 0x85EBCA6B)        (uint32 wrap-around)
    u   = (hash32(index ^ key) >> 8) * 2**-24                     in [0, 1)

hash32 is the 'lowbias32' integer mix (a bijection of uint32): x ^= x >> 16;
x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16. `index` is the
row-major flat position. Backends implement exactly this (scalar op "uniform").
"""
from __future__ import annotations

import itertools

import numpy as np

from ..node import Op, Parameter, Tensor, make, register, shape_error
from ..types import TensorType, as_size

RNG_COUNTER_NAME = "rng_counter"
_seeds = itertools.count(1)
_counter: list = []


# the generator's constants, which every backend's "uniform" reads from here
SEED_MUL = 0x9E3779B9
COUNTER_MUL = 0x85EBCA6B
HASH_STEPS = ((16, 0x7FEB352D), (15, 0x846CA68B), (16, None))   # x ^= x >> shift; x *= mul
MANTISSA_SHIFT = 8                                                # u = (bits >> 8) * 2**-24
UNIT = 2.0 ** -24


def hash32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint32).copy()
    with np.errstate(over="ignore"):
        for shift, mul in HASH_STEPS:
            x ^= x >> np.uint32(shift)
            if mul is not None:
                x *= np.uint32(mul)
    return x


def uniform_bits(seed: int, counter, index: np.ndarray) -> np.ndarray:
    """hash32(index ^ key) for the key of (seed, counter); counter an int or an array."""
    c = (np.asarray(counter).astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)
    with np.errstate(over="ignore"):
        k = hash32(np.uint32(seed & 0xFFFFFFFF) * np.uint32(SEED_MUL) + c * np.uint32(COUNTER_MUL))
    return hash32(np.asarray(index).astype(np.uint32) ^ k)


def uniform_floats(seed: int, counter, index: np.ndarray) -> np.ndarray:
    """The float32 values in [0, 1) at flat positions `index` (see the module docstring)."""
    bits = uniform_bits(seed, counter, index)
    return (bits >> np.uint32(MANTISSA_SHIFT)).astype(np.float32) * np.float32(UNIT)


def _ref(ctx, counter):
    shape = ctx.out_shape
    idx = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.uint64).astype(np.uint32)
    return uniform_floats(ctx.attrs["seed"], int(counter), idx).reshape(shape)


def _infer(inputs, attrs):
    (c,) = inputs
    if c.ndim != 0 or c.dtype not in ("int32", "int64"):
        raise shape_error("uniform", f"counter must be an integer scalar, got {c.type}", c)
    return TensorType("float32", attrs["shape"])


register(Op("uniform", "random", _infer, _ref, None, cost=Op.EXPENSIVE,
            doc="counter-based uniform [0,1) float32 of a static or symbolic shape"))


def step_counter() -> Parameter:
    """The process-wide call counter that keys random ops; compiled functions that
    read it advance it by one per call (unless the user updates it)."""
    if not _counter:
        p = Parameter(np.zeros((), np.int64), RNG_COUNTER_NAME, trainable=False, where="<nngraph>")
        object.__setattr__(p, "_state", dict(p._state, auto_increment=True))
        _counter.append(p)
    return _counter[0]


def uniform(shape, seed=None, counter: Tensor | None = None) -> Tensor:
    """Uniform [0, 1) float32 noise. seed=None draws a fresh seed per call of this
    builder (deterministic for a given build order)."""
    seed = next(_seeds) if seed is None else int(seed)
    c = step_counter() if counter is None else counter
    return make("uniform", (c,), shape=tuple(as_size(s) for s in shape), seed=seed)
