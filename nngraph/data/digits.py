"""scikit-learn's handwritten digits (1797 images of 8x8 pixels, 10 classes),
scaled to [0, 1] and split with a seed. scikit-learn is an optional dependency
(`pip install nngraph[data]`); the data ships with it, nothing is downloaded."""
from __future__ import annotations

import numpy as np

from .batching import split


def load_digits(images: bool = False, val: float = 0.1, test: float = 0.2, seed: int = 0) -> dict:
    """{"train": (X, y), "val": (X, y), "test": (X, y)}; X float32 in [0, 1], rows of 64
    pixels, or [N, 1, 8, 8] images with images=True; y int32 class ids (stratified split)."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise ImportError("ng.data.load_digits needs scikit-learn: pip install scikit-learn "
                          "(or pip install 'nngraph[data]')") from None
    d = _load()
    X = (d.data / 16.0).astype(np.float32)
    if images:
        X = X.reshape(-1, 1, 8, 8)
    return split(X, d.target.astype(np.int32), val=val, test=test, seed=seed)
