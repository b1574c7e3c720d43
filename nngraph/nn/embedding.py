"""Embedding: integer token ids -> rows of a learned table (Keras' Embedding,
PyTorch's nn.Embedding).

The lookup is ``ng.take(embeddings, ids, axis=0)``, so its gradient is the
scatter-add of take's definition: a row used twice in a batch receives the sum of
both slices of the cotangent, and rows never used receive zero. An id outside
[-vocab, vocab) makes the compiled call raise ``ng.InputError`` (take's index check)
instead of reading another row.
"""
from __future__ import annotations

from .. import init as _init
from ..errors import ShapeError
from ..ops import elementwise as ew
from ..ops.gather import take
from ..types import is_int
from . import regularizers
from .layers import Layer


class Embedding(Layer):
    """ids [N, ...] (int32 or int64) -> vectors [N, ..., dim], a row of the parameter
    `embeddings` [vocab, dim] per id. The sizes after the batch axis may be dynamic
    (sequences of any length): the table does not depend on them."""

    def __init__(self, vocab: int, dim: int, embeddings_initializer="uniform", embeddings_regularizer=None,
                 name=None, seed=None):
        super().__init__(name, seed)
        if int(vocab) < 1 or int(dim) < 1:
            raise ValueError(f"Embedding: vocab and dim must be >= 1, got vocab={vocab}, dim={dim}")
        self.vocab, self.dim = int(vocab), int(dim)
        self.embeddings_initializer = embeddings_initializer
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)

    @property
    def embeddings(self):
        """The table [vocab, dim] (a parameter; exists once the layer has been called)."""
        return self.params["embeddings"]

    def shape_for_parameters(self, shape):
        return ()  # the table is [vocab, dim] whatever the ids' shape

    def ensure_built(self, x, rng=None):
        if not is_int(x.dtype):
            raise ShapeError(f"{self.name}: Embedding takes integer token ids, got {x.name or 'a tensor'} "
                             f"of type {x.type}; cast it with ng.cast(x, 'int32') (or give Sequential "
                             "input_dtype='int32')")
        super().ensure_built(x, rng)

    def build(self, input_shape, rng):
        table = _init.get(self.embeddings_initializer)((self.vocab, self.dim), rng=rng)
        self.add_param("embeddings", table, regularizer=self.embeddings_regularizer)

    def forward(self, x, training):
        return take(self.params["embeddings"], ew.as_tensor(x), axis=0)
