"""Multi-head attention (Keras' MultiHeadAttention, the layer of a transformer block).

``mha(query, value, key=None)`` on batch-first sequences [N, Tq, Fq], [N, Tk, Fv],
[N, Tk, Fk] (key defaults to value, value to query: ``mha(x)`` is self-attention):

    Q = query @ query_kernel + query_bias      [N, Tq, heads * key_dim], split per head
    K = key @ key_kernel + key_bias            [N, Tk, heads * key_dim]
    V = value @ value_kernel + value_bias      [N, Tk, heads * value_dim]
    A_h = softmax(Q_h K_h^T / sqrt(key_dim))   per head, masked when causal
    out = concat_h(A_h V_h) @ output_kernel + output_bias   [N, Tq, Fq]

The kernels are 2-d (inputs x heads * dims, heads contiguous), which is PyTorch's
``nn.MultiheadAttention`` layout transposed: ``query_kernel`` is
``q_proj_weight.T`` (or the first third of ``in_proj_weight``, transposed) and
``output_kernel`` is ``out_proj.weight.T``, so weights copy across directly.

`causal=True` lets query position i attend to key positions j <= i only (the mask
of a decoder, PyTorch's ``is_causal``). Masked scores are replaced by a large
negative finite number, not -inf, so that `check_numerics` never sees an infinity
and a row's softmax stays finite.

The computation is the graph function `multi_head_attention` (parameters passed as
tensors), so it can be checked by finite differences in float64; the layer owns
float32 parameters and calls it.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import init as _init
from ..errors import ShapeError
from ..node import Tensor
from ..ops import contraction as ct
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..sizes import can_join
from ..types import Dim, np_dtype
from .layers import CALLS, Layer, current_mode, default_rng

# the score a masked position gets: exp(MASKED - max) is 0 in float32 and float64
MASKED_SCORE = -1e9
PROJECTIONS = ("query", "key", "value", "output")


def causal_mask(tq, tk) -> Tensor:
    """[Tq, Tk] booleans: True where query i may attend to key j (j <= i)."""
    return ew.less_equal(ew.iota((1, tk), axis=1), ew.iota((tq, 1), axis=0))


def scaled_dot_product_attention(q, k, v, causal: bool = False) -> Tensor:
    """softmax(q k^T / sqrt(d)) v over the last two axes of q [..., Tq, d],
    k [..., Tk, d], v [..., Tk, dv] (PyTorch's scaled_dot_product_attention)."""
    scores = ct.matmul(q, mv.transpose(k, tuple(range(k.ndim - 2)) + (k.ndim - 1, k.ndim - 2)))
    scores = scores * (1.0 / math.sqrt(int(q.shape[-1])))
    if causal:
        masked = ew.constant(np.asarray(MASKED_SCORE, np_dtype(scores.dtype)))
        scores = ew.where(causal_mask(q.shape[-2], k.shape[-2]), scores, masked)
    return ct.matmul(F.softmax(scores, axis=-1), v)


def _split_heads(x, heads: int) -> Tensor:
    """[N, T, heads * d] -> [N, heads, T, d]."""
    n, t, hd = x.shape
    return mv.transpose(mv.reshape(x, (n, t, heads, int(hd) // heads)), (0, 2, 1, 3))


def _merge_heads(x) -> Tensor:
    """[N, heads, T, d] -> [N, T, heads * d]."""
    n, h, t, d = x.shape
    return mv.reshape(mv.transpose(x, (0, 2, 1, 3)), (n, t, int(h) * int(d)))


def multi_head_attention(query, value, key, weights: dict, heads: int, causal: bool = False) -> Tensor:
    """The layer's computation with its parameters given as tensors: `weights` maps
    "query_kernel", "query_bias", ..., "output_bias" (see the module docstring) to tensors."""
    def project(x, name):
        y = ct.matmul(x, weights[f"{name}_kernel"])
        return y + weights[f"{name}_bias"] if f"{name}_bias" in weights else y
    q = _split_heads(project(query, "query"), heads)
    k = _split_heads(project(key, "key"), heads)
    v = _split_heads(project(value, "value"), heads)
    return project(_merge_heads(scaled_dot_product_attention(q, k, v, causal)), "output")


class MultiHeadAttention(Layer):
    """Attention of `heads` heads of size `key_dim` (values of size `value_dim`,
    default key_dim); the output has the query's feature size. Called as
    ``layer(query, value, key=None)``; ``layer(x)`` is self-attention."""

    def __init__(self, heads: int, key_dim: int, value_dim: int | None = None, causal: bool = False,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", name=None, seed=None):
        super().__init__(name, seed)
        if int(heads) < 1 or int(key_dim) < 1 or (value_dim is not None and int(value_dim) < 1):
            raise ValueError(f"MultiHeadAttention: heads, key_dim and value_dim must be >= 1, got "
                             f"heads={heads}, key_dim={key_dim}, value_dim={value_dim}")
        self.heads, self.key_dim = int(heads), int(key_dim)
        self.value_dim = int(value_dim) if value_dim is not None else self.key_dim
        self.causal, self.use_bias, self.kernel_initializer = bool(causal), bool(use_bias), kernel_initializer

    def _inputs(self, query, value, key) -> tuple:
        query = ew.as_tensor(query)
        value = query if value is None else ew.as_tensor(value)
        key = value if key is None else ew.as_tensor(key)
        for role, t in (("query", query), ("value", value), ("key", key)):
            if t.ndim != 3 or isinstance(t.shape[-1], Dim):
                raise ShapeError(f"{self.name}: the {role} must be [batch, time, features] with static features, "
                                 f"got {t.name or role} of type {t.type}")
        if not can_join(key.shape[1], value.shape[1]):
            raise ShapeError(f"{self.name}: key and value must have the same length, got key {key.type} "
                             f"and value {value.type}")
        return query, value, key

    def _build(self, dims: tuple, rng) -> None:
        fq, fv, fk = dims
        init = _init.get(self.kernel_initializer)
        h, dk, dv = self.heads, self.key_dim, self.value_dim
        for name, rows, cols in (("query", fq, h * dk), ("key", fk, h * dk), ("value", fv, h * dv),
                                 ("output", h * dv, fq)):
            self.add_param(f"{name}_kernel", init((rows, cols), rng=rng))
            if self.use_bias:
                self.add_param(f"{name}_bias", np.zeros(cols, np.float32))
        self.feature_dims, self.built = dims, True

    def __call__(self, query, value=None, key=None, training: bool | None = None, rng=None) -> Tensor:
        """Attend from `query` to `key`/`value`; parameters are made on the first call."""
        query, value, key = self._inputs(query, value, key)
        dims = tuple(int(t.shape[-1]) for t in (query, value, key))
        if not self.built:
            self._build(dims, rng if rng is not None else default_rng(self.seed))
        elif dims != self.feature_dims:
            raise ShapeError(f"{self.name}: was built for (query, value, key) features {self.feature_dims}, "
                             f"now called with {dims}")
        self.input_shape = tuple(query.shape[1:])
        y = multi_head_attention(query, value, key, self.params, self.heads, self.causal)
        self.output_shape = tuple(y.shape[1:])
        if training is None and current_mode() is None:
            CALLS[y] = (self, (query, value, key))
        return y
