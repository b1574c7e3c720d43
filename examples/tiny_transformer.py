"""A tiny transformer encoder block (token and position embeddings, multi-head
self-attention, feed-forward, residual connections and LayerNorm) trained on
generated sequences: which of four tokens occurs most often in a sequence of 12.

    python examples/tiny_transformer.py [--target reference|cpu|gpu]
"""
import sys

import numpy as np

import nngraph as ng


class EncoderBlock(ng.nn.Layer):
    """x + attention(x), normalised; then x + feed_forward(x), normalised (post-LN,
    as in "Attention is all you need")."""

    def __init__(self, dim, heads, hidden, causal=False, name=None):
        super().__init__(name)
        self.attention = ng.nn.MultiHeadAttention(heads, dim // heads, causal=causal)
        self.norm1, self.norm2 = ng.nn.LayerNorm(), ng.nn.LayerNorm()
        self.expand = ng.nn.Dense(hidden, activation="relu")
        self.project = ng.nn.Dense(dim)

    def forward(self, x, training):
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.project(self.expand(x)))


class Classifier(ng.nn.Module):
    """ids [N, T] -> class logits [N, classes]: embeddings, one encoder block, the
    mean over time, a Dense head."""

    def __init__(self, vocab, length, classes, dim=16, heads=2):
        super().__init__()
        self.tokens = ng.nn.Embedding(vocab, dim)
        self.positions = ng.nn.Embedding(length, dim)
        self.block = EncoderBlock(dim, heads, hidden=2 * dim)
        self.head = ng.nn.Dense(classes)

    def forward(self, ids, training=False):
        x = self.tokens(ids) + self.positions(ng.arange(ids.shape[1]))  # [N, T, dim] + [T, dim]
        return self.head(ng.mean(self.block(x), axis=1))


def majority_data(n, length=12, vocab=4, seed=0):
    """Random token sequences and, as label, the token that occurs most often (ties: the smallest)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (n, length)).astype(np.int32)
    counts = np.stack([(ids == v).sum(axis=1) for v in range(vocab)], axis=1)
    return ids, counts.argmax(axis=1).astype(np.int32)


def main(target=None, epochs=8, verbose=1, n=512):
    X, y = majority_data(n)
    Xt, yt = majority_data(256, seed=1)
    ng.nn.set_seed(0)
    model = Classifier(vocab=4, length=X.shape[1], classes=4)
    model.compile(optimizer=ng.optim.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], target=target)
    history = model.fit(X, y, epochs=epochs, batch_size=32, verbose=verbose)
    scores = model.evaluate(Xt, yt)
    print(f"loss per epoch: {' '.join(f'{v:.3f}' for v in history['loss'])}")
    print(f"test accuracy {100 * scores['accuracy']:.1f}% (chance about 25%)")
    return history, scores


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--target") + 1] if "--target" in sys.argv else None)
