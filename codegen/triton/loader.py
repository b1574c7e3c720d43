"""Imports generated Triton source as a real module.

@triton.jit reads a kernel's source through `inspect`, so the source must live in a
file: it is written once to a cache directory, named by its hash, and imported from
there (a second compile of the same program reuses the file and the module).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile


def cache_dir() -> str:
    base = os.environ.get("NNGRAPH_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nngraph")
    path = os.path.join(base, "triton")
    os.makedirs(path, exist_ok=True)
    return path


def load(source: str):
    """The module made from `source` (cached by content)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    modname = f"nngraph_triton_{digest}"
    mod = sys.modules.get(modname)
    if mod is not None:
        return mod
    path = os.path.join(cache_dir(), f"{modname}.py")
    try:
        with open(path, encoding="utf-8") as f:
            ok = f.read() == source
    except OSError:
        ok = False
    if not ok:   # missing or corrupt: write it atomically
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[modname]
        raise
    return mod
