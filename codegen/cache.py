"""Disk cache of compiled object code.

Directory: $NNGRAPH_CACHE_DIR, else the user cache dir (~/.cache/nngraph, or
$XDG_CACHE_HOME/nngraph). Key: sha256 of the IR text and the target description
(triple, CPU, features, llvmlite/LLVM versions). An entry is a header line
`NNGRAPH-OBJ1 <sha256 of payload> <payload length>\\n` followed by the object
bytes; it is written to a temporary file and moved into place with os.replace, so
readers never see half an entry. A read whose header, length or checksum does not
match returns None (the caller recompiles and overwrites it); nothing is trusted.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

MAGIC = b"NNGRAPH-OBJ1"


def cache_dir() -> Path:
    d = os.environ.get("NNGRAPH_CACHE_DIR")
    if d:
        return Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nngraph"


def key(ir_text: str, target_id: str) -> str:
    h = hashlib.sha256()
    h.update(target_id.encode())
    h.update(b"\0")
    h.update(ir_text.encode())
    return h.hexdigest()


def path_for(k: str) -> Path:
    return cache_dir() / f"{k}.o"


def load(k: str):
    """The cached object bytes for key `k`, or None if absent or damaged."""
    p = path_for(k)
    try:
        data = p.read_bytes()
    except OSError:
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


def store(k: str, obj: bytes) -> bool:
    """Write an entry atomically; False (and no exception) if the directory is not writable."""
    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".o")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + b" " + hashlib.sha256(obj).hexdigest().encode() + b" " + str(len(obj)).encode() + b"\n")
                f.write(obj)
            os.replace(tmp, path_for(k))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:
        return False
    return True
