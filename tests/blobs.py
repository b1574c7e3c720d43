"""Three Gaussian blobs in 4-d: a small classification set that models learn in a
few epochs (shared by the ng.nn tests)."""
import numpy as np


def blobs(n=120, seed=0):
    """(X float32 [n, 4], y int32 [n]) with classes 0..2."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    centers = np.array([[2, 0, 0, 1], [0, 2, 0, -1], [0, 0, 2, 0]], np.float32)
    return (centers[y] + 0.5 * rng.normal(size=(n, 4))).astype(np.float32), y
