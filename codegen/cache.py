"""Disk cache of compiled object code.

Directory: $NNGRAPH_CACHE_DIR, else the user cache dir (~/.cache/nngraph, or
$XDG_CACHE_HOME/nngraph). Two kinds of entry: `<key>.o`, object code keyed by the
sha256 of the IR text and the target description (triple, CPU, features,
llvmlite/LLVM versions); `<key>.lib`, object code of a module every process builds
alike (the worker pool: codegen/llvm/object_cache.py); `<key>.nga`, a whole compiled function (Program, object
code, runtime tables; keyed and packed by runtime/compile_cache.py). An entry is a header line
`NNGRAPH-OBJ1 <sha256 of payload> <payload length>\\n` followed by the object
bytes; it is written to a temporary file and moved into place with os.replace, so
readers never see half an entry. A read whose header, length or checksum does not
match returns None (the caller recompiles and overwrites it); nothing is trusted.

Security. A checksum catches accidents, not intent: anyone who can write the
directory can plant an object file (or a Triton module) with a valid checksum, and
nngraph would run it. So the directory is created 0700, and a directory or entry
that is not owned by this user, or that group or others can write, is refused: a
warning (once per path) and the program is compiled without the cache.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

MAGIC = b"NNGRAPH-OBJ1"


def cache_dir() -> Path:
    d = os.environ.get("NNGRAPH_CACHE_DIR")
    if d:
        return Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nngraph"


_warned: set = set()


def _warn_once(path, why: str) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        warnings.warn(f"nngraph cache: {path} is {why}; it is not used (compiling without the cache). "
                      f"Set NNGRAPH_CACHE_DIR to a directory only you can write.", RuntimeWarning, stacklevel=4)


def unsafe_reason(st) -> str:
    """Why a file or directory with stat `st` could hold someone else's code, or ""."""
    uid = os.getuid()
    if st.st_uid != uid:
        return f"owned by uid {st.st_uid}, not by you (uid {uid})"
    if st.st_mode & 0o022:
        return f"writable by group or others (mode {oct(st.st_mode & 0o777)})"
    return ""


def trusted_dir(path=None):
    """`path` (default: the cache directory), created 0700 if missing, when only this
    user can write it; else None, with a warning once."""
    d = Path(path) if path is not None else cache_dir()
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(d)
    except OSError:
        return None
    why = unsafe_reason(st)
    if why:
        _warn_once(d, why)
        return None
    return d


def read_trusted(path):
    """The bytes of `path` if it is a regular file only this user can write, else None
    (missing: silently; someone else's or writable by others: warned once)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        why = unsafe_reason(st)
        if why:
            _warn_once(path, why)
            return None
        return f.read()


def key(ir_text: str, target_id: str) -> str:
    h = hashlib.sha256()
    h.update(target_id.encode())
    h.update(b"\0")
    h.update(ir_text.encode())
    return h.hexdigest()


def path_for(k: str, suffix: str = ".o") -> Path:
    return cache_dir() / f"{k}{suffix}"


def load(k: str, suffix: str = ".o"):
    """The cached bytes for key `k` (an object file: suffix ".o"; a whole compiled
    function: ".nga", runtime/compile_cache.py), or None if absent or damaged."""
    d = trusted_dir()
    data = read_trusted(d / f"{k}{suffix}") if d is not None else None
    if data is None:
        return None
    nl = data.find(b"\n")
    if nl < 0:
        return None
    parts = data[:nl].split(b" ")
    if len(parts) != 3 or parts[0] != MAGIC:
        return None
    payload = data[nl + 1:]
    try:
        n = int(parts[2])
    except ValueError:
        return None
    if n != len(payload) or hashlib.sha256(payload).hexdigest().encode() != parts[1]:
        return None
    return payload


def store(k: str, obj: bytes, suffix: str = ".o") -> bool:
    """Write an entry atomically; False (and no exception) if the directory is not writable."""
    d = trusted_dir()
    if d is None:
        return False
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".o")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + b" " + hashlib.sha256(obj).hexdigest().encode() + b" " + str(len(obj)).encode() + b"\n")
                f.write(obj)
            os.replace(tmp, d / f"{k}{suffix}")
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:
        return False
    return True


# ----------------------------------------------------------------------------- per-host tables

def read_json_table(name: str) -> dict:
    """The dict stored in `name` (a JSON file in the cache directory), or {} when it is
    missing, someone else's, writable by others, or not a JSON object (a damaged or
    foreign table is measured again and overwritten, never trusted)."""
    import json
    d = trusted_dir()
    data = read_trusted(d / name) if d is not None else None
    try:
        table = json.loads(data) if data else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return table if isinstance(table, dict) else {}


def write_json_table(name: str, table: dict) -> bool:
    """Replace `name` in the cache directory with `table` as JSON, atomically (a
    temporary file moved into place: readers see the old table or the new one);
    False, and nothing written, where the directory is not ours or not writable."""
    import json
    d = trusted_dir()
    if d is None:
        return False
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(table, f, indent=1, sort_keys=True)
        os.replace(tmp, d / name)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)
        return False
    return True
