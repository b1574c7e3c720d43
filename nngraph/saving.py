"""ng.save / ng.load: parameter values as .npz, no pickled objects, atomic writes."""
from __future__ import annotations

import os
import tempfile

import numpy as np

from .errors import ShapeError


def _key(p, i):
    return p.name or f"param{i}"


def _as_list(params):
    if isinstance(params, dict):
        return list(params.values())
    return list(params)


def save(path, params) -> None:
    """Write the values of `params` (a list or dict of parameters) to `path` (.npz).
    The file is replaced atomically: an interrupted save leaves the old file intact."""
    params = _as_list(params)
    arrays = {}
    for i, p in enumerate(params):
        k = _key(p, i)
        if k in arrays:
            raise ValueError(f"save: two parameters are named {k!r}; give them distinct names")
        arrays[k] = np.asarray(p.value)
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nngraph-", suffix=".npz", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path, params) -> None:
    """Read values saved by `save` into `params`. Every parameter must be in the file
    with its shape and dtype; nothing is changed unless all of them are."""
    params = _as_list(params)
    with np.load(os.fspath(path), allow_pickle=False) as f:
        files = {k: f[k] for k in f.files}
    new = []
    for i, p in enumerate(params):
        k = _key(p, i)
        if k not in files:
            raise KeyError(f"load: parameter {k!r} ({p.type}) is missing from {path}")
        a = files[k]
        if a.shape != tuple(p.shape) or a.dtype != p.value.dtype:
            raise ShapeError(f"load: parameter {k!r} expects {p.type}, file has {a.dtype}{list(a.shape)}")
        new.append(a)
    for p, a in zip(params, new):
        p.value = a
