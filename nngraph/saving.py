"""ng.save / ng.load: parameter values as .npz, no pickled objects, atomic writes.

The file is a standard .npz (a zip of .npy arrays, readable by
`np.load(path, allow_pickle=False)`), one entry per parameter under its name.
It is written entry by entry with zipfile and NumPy's .npy writer rather than
np.savez, so any parameter name works (np.savez reserves 'file' and
'allow_pickle'). The data goes to a temporary file beside the target, is
flushed to disk, then renamed over it: a save that fails or is interrupted
leaves the old file as it was. The new file keeps the old one's permissions (a new
one gets the umask's, as open() would give); a symlink is written through (its
target is replaced, the link stays). A save killed outright (kill -9) cannot clean
up its temporary file: its name carries the saving process's id, and the next save
to that directory removes those of processes that no longer exist.
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


TEMP_PREFIX = ".nngraph-save-"
TEMP_SUFFIX = ".npz.tmp"


def _remove_stale_temps(d: str) -> None:
    """Temporary files of earlier saves whose process is gone (killed mid-save)."""
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
            continue
        pid = name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            try:
                os.unlink(os.path.join(d, name))
            except OSError:
                pass


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:       # exists, someone else's
        return True
    return True


def _mode_for(path: str) -> int:
    """The existing file's permission bits, else what open() would create."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where /proc shows it (setting it
    to read it would race with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def save(path, params) -> None:
    """Write the values of `params` (a list or dict of parameters, or one) to `path`.
    The file is replaced atomically: an interrupted save leaves the old file intact."""
    save_arrays(path, {k: np.asarray(p.value) for k, p in _named(params)})


def save_arrays(path, arrays: dict) -> None:
    """Write named arrays to `path` as an .npz, atomically (what `save` does for
    parameters; ng.nn's model files use it for weights, optimizer state and config).
    A symlink is written through to its target; stale temp files of killed saves in
    that directory are removed first."""
    path = os.path.realpath(os.fspath(path))     # through a symlink to its target
    d = os.path.dirname(path)
    _remove_stale_temps(d)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=TEMP_SUFFIX, dir=d)
    try:
        os.chmod(tmp, _mode_for(path))
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


def _check_is_npz(path: str) -> None:
    """Say what the file is when it is not what ng.save writes (np.load would report
    a text file as 'pickled data' and return a .npy's array)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return
    if head.startswith(b"\x93NUMPY"):
        what = "a single NumPy array (.npy)"
    elif not head:
        what = "empty"
    elif all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        what = f"a text file (it starts with {head.decode('ascii')!r})"
    else:
        what = f"not a zip archive (it starts with bytes {head!r})"
    raise ValueError(f"load: {path} is {what}; expected a .npz of named parameters as written by ng.save")


def load(path, params) -> None:
    """Read values written by `save` into `params` (list, dict or one parameter).
    Every parameter must be in the file with its shape and dtype; nothing changes
    unless all of them are. Entries of the file that no parameter asks for are ignored."""
    items = _named(params)
    path = os.fspath(path)
    _check_is_npz(path)
    with np.load(path, allow_pickle=False) as f:
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
