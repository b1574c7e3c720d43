"""A character-level LSTM language model trained on text that ships with Python:
the docstrings of a few standard-library modules (read with `inspect`, no
download). It learns to predict each next character, then writes new text, one
character at a time, sampled from its predictions with a fixed seed.

    python examples/char_lstm.py [--target reference|cpu|gpu] [--steps 600]

One to two minutes on the CPU (two busy cores). The model: Embedding(vocabulary, 32) ->
LSTM(128, return_sequences=True) -> Dense(vocabulary), a loss at every step (the
cross-entropy of each next character); the LSTM is one ng.scan loop, so the same
compiled training step serves every window length.
"""
import inspect
import sys

import numpy as np

import nngraph as ng

MODULES = ("textwrap", "string", "functools", "itertools", "collections", "json", "argparse", "random")


def corpus(modules=MODULES) -> str:
    """The docstrings of the modules and of their public functions and classes, in a
    fixed order (the same text on every run of one Python version)."""
    import importlib
    parts = []
    for name in modules:
        module = importlib.import_module(name)
        parts.append(inspect.getdoc(module) or "")
        for attr in sorted(a for a in dir(module) if not a.startswith("_")):
            doc = inspect.getdoc(getattr(module, attr))
            if doc and getattr(getattr(module, attr), "__module__", None) == name:
                parts.append(doc)
    return "\n\n".join(p for p in parts if p)


class CharModel(ng.nn.Module):
    """ids [N, T] -> logits of the next character at every step [N, T, vocabulary]."""

    def __init__(self, vocabulary, dim=32, units=128):
        super().__init__()
        self.embed = ng.nn.Embedding(vocabulary, dim)
        self.lstm = ng.nn.LSTM(units, return_sequences=True)
        self.head = ng.nn.Dense(vocabulary)

    def forward(self, ids, training=False):
        return self.head(self.lstm(self.embed(ids)))


def windows(ids, length, count, rng):
    """`count` random windows of the text and, as targets, the same windows moved by one."""
    starts = rng.integers(0, len(ids) - length - 1, count)
    X = np.stack([ids[s:s + length] for s in starts])
    Y = np.stack([ids[s + 1:s + length + 1] for s in starts])
    return X.astype(np.int32), Y.astype(np.int32)


def generate(model, vocab, seed_text, length, window, temperature=0.8, seed=0):
    """Sample `length` characters after `seed_text`, each from the model's prediction
    over the last `window` characters (one predict call per character)."""
    rng = np.random.default_rng(seed)
    index = {c: i for i, c in enumerate(vocab)}
    ids = [index.get(c, 0) for c in seed_text]
    for _ in range(length):
        context = np.asarray([ids[-window:]], np.int32)
        logits = model.predict(context)[0, -1].astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(vocab), p=p / p.sum())))
    return "".join(vocab[i] for i in ids)


def main(target=None, steps=600, window=48, batch=32, verbose=1, generate_chars=300):
    """Train for about `steps` minibatches; returns (the loss per epoch, the generated text)."""
    text = corpus()
    vocab = sorted(set(text))
    ids = np.asarray([vocab.index(c) for c in text])
    ng.nn.set_seed(0)
    model = CharModel(len(vocab))
    model.compile(optimizer=ng.optim.Adam(0.005), loss="sparse_categorical_crossentropy", target=target)
    epochs = min(10, steps)              # the loss is reported per epoch: ten points on the curve
    X, Y = windows(ids, window, (steps // epochs) * batch, np.random.default_rng(0))
    losses = model.fit(X, Y, epochs=epochs, batch_size=batch, verbose=verbose)["loss"]
    if verbose:
        print(f"{len(text)} characters of docstrings, {len(vocab)} distinct; {steps} steps of "
              f"{batch} windows of {window}; loss {losses[0]:.3f} -> {losses[-1]:.3f} "
              f"(uniform guess: {np.log(len(vocab)):.3f})")
    sample = generate(model, vocab, text[:window], generate_chars, window) if generate_chars else ""
    if verbose:
        print("---- generated (seed: the first %d characters of the text) ----" % window)
        print(sample)
    return losses, sample


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--target") + 1] if "--target" in sys.argv else None,
         steps=int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 600)
