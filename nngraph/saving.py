"""ng.save / ng.load: parameter values as .npz, no pickled objects, atomic writes.

The file is a standard .npz (a zip of .npy arrays, readable by
`np.load(path, allow_pickle=False)`), one entry per parameter under its name.
It is written entry by entry with zipfile and NumPy's .npy writer rather than
np.savez, so any parameter name works (np.savez reserves 'file' and
'allow_pickle'). The data goes to a temporary file beside the target, is
flushed to disk, then renamed over it: a save that fails or is interrupted
leaves the old file as it was.
"""
from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

from .errors import NNGraphError, ShapeError
from .node import Parameter


class MissingParameterError(NNGraphError, KeyError):
    """ng.load: a parameter has no entry in the file."""

    def __str__(self):  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


def _named(params) -> list:
    """[(key, parameter)]: a dict's keys, else each parameter's name (param{i} if none)."""
    if isinstance(params, Parameter):
        params = [params]
    items = list(params.items()) if isinstance(params, dict) else [
        (p.name or f"param{i}", p) for i, p in enumerate(params)]
    seen = set()
    for k, p in items:
        if not isinstance(p, Parameter):
            raise TypeError(f"expected parameters, got {type(p).__name__} for {k!r}")
        if not isinstance(k, str) or not k:
            raise TypeError(f"parameter keys must be non-empty strings, got {k!r}")
        if k in seen:
            raise ValueError(f"two parameters are named {k!r}; give them distinct names "
                             "(or pass a dict name -> parameter)")
        seen.add(k)
    return items


def _write_npz(f, arrays: dict) -> None:
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for k, a in arrays.items():
            with z.open(k + ".npy", "w", force_zip64=True) as e:
                np.lib.format.write_array(e, np.asarray(a), allow_pickle=False)


def save(path, params) -> None:
    """Write the values of `params` (a list or dict of parameters, or one) to `path`.
    The file is replaced atomically: an interrupted save leaves the old file intact."""
    save_arrays(path, {k: np.asarray(p.value) for k, p in _named(params)})


def save_arrays(path, arrays: dict) -> None:
    """Write named arrays to `path` as an .npz, atomically (what `save` does for
    parameters; ng.nn's model files use it for weights, optimizer state and config)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nngraph-save-", suffix=".npz.tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable where the platform allows it
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load(path, params) -> None:
    """Read values written by `save` into `params` (list, dict or one parameter).
    Every parameter must be in the file with its shape and dtype; nothing changes
    unless all of them are. Entries of the file that no parameter asks for are ignored."""
    items = _named(params)
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as f:
        if not hasattr(f, "files"):
            raise ValueError(f"load: {path} holds a single array, not a .npz of named parameters")
        have = set(f.files)
        new = []
        for k, p in items:
            if k not in have:
                raise MissingParameterError(
                    f"load: parameter {k!r} ({p.type}) is missing from {path}; the file has "
                    f"{', '.join(sorted(have)) or 'no entries'}")
            a = f[k]
            if a.shape != tuple(p.shape) or a.dtype != p.value.dtype:
                raise ShapeError(f"load: parameter {k!r} expects {p.type} ({p.value.dtype}), "
                                 f"{path} has {a.dtype} of shape {list(a.shape)}")
            new.append(a)
    for (_, p), a in zip(items, new):
        p.value = a
