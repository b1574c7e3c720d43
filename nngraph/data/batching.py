"""Batches, shuffling, train/validation/test splits and the one-pixel-shift
augmentation: plain NumPy, seeded so runs repeat."""
from __future__ import annotations

import numpy as np


def batches(X, y=None, batch_size: int = 32, shuffle: bool = False, seed=None, drop_last: bool = False):
    """Yield (X[idx], y[idx]) (or X[idx] when y is None) over the data in batches;
    with shuffle, a permutation from `seed`."""
    X = np.asarray(X)
    n = len(X)
    if y is not None and len(y) != n:
        raise ValueError(f"batches: {n} inputs but {len(y)} targets")
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for s in range(0, stop, batch_size):
        idx = order[s:s + batch_size]
        yield (X[idx], np.asarray(y)[idx]) if y is not None else X[idx]


def split(X, y, val: float = 0.1, test: float = 0.2, seed=0, stratify: bool = True) -> dict:
    """{"train": (X, y), "val": (X, y), "test": (X, y)}: disjoint, covering all rows.
    With stratify (and integer labels) each class is split in the same proportions."""
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"split: {len(X)} inputs but {len(y)} targets")
    if val < 0 or test < 0 or val + test >= 1:
        raise ValueError(f"split: need val >= 0, test >= 0 and val + test < 1, got {val}, {test}")
    rng = np.random.default_rng(seed)
    groups = ([np.flatnonzero(y == c) for c in np.unique(y)] if stratify and y.dtype.kind in "iub" and y.ndim == 1
              else [np.arange(len(y))])
    parts = {"train": [], "val": [], "test": []}
    for g in groups:
        g = rng.permutation(g)
        n_test, n_val = int(round(test * len(g))), int(round(val * len(g)))
        parts["test"].append(g[:n_test])
        parts["val"].append(g[n_test:n_test + n_val])
        parts["train"].append(g[n_test + n_val:])
    out = {}
    for k, idx in parts.items():
        idx = rng.permutation(np.concatenate(idx)) if idx else np.zeros(0, np.int64)
        out[k] = (X[idx], y[idx])
    return out


SHIFTS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right by one pixel


def shift(images, dy: int, dx: int) -> np.ndarray:
    """Images (..., H, W) moved by (dy, dx) pixels; what enters is zero."""
    a = np.asarray(images)
    out = np.zeros_like(a)
    h, w = a.shape[-2:]
    src_y, dst_y = slice(max(-dy, 0), h - max(dy, 0)), slice(max(dy, 0), h - max(-dy, 0))
    src_x, dst_x = slice(max(-dx, 0), w - max(dx, 0)), slice(max(dx, 0), w - max(-dx, 0))
    out[..., dst_y, dst_x] = a[..., src_y, src_x]
    return out


def shift_augment(X, y, image_shape=None, shifts=SHIFTS):
    """The data plus copies moved by one pixel in each direction (5x the rows).
    X holds images (..., H, W), or flat rows with image_shape=(H, W)."""
    X, y = np.asarray(X), np.asarray(y)
    imgs = X.reshape((len(X),) + tuple(image_shape)) if image_shape is not None else X
    if imgs.ndim < 3:
        raise ValueError(f"shift_augment: X of shape {X.shape} holds no images; pass image_shape=(H, W)")
    moved = [imgs] + [shift(imgs, dy, dx) for dy, dx in shifts]
    Xa = np.concatenate(moved).reshape((-1,) + X.shape[1:])
    return Xa, np.concatenate([y] * len(moved))
