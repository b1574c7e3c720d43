"""Imports generated Triton source as a real module.

@triton.jit reads a kernel's source through `inspect`, so the source must live in a
file: it is written once to a cache directory, named by its hash, and imported from
there (a second compile of the same program reuses the file and the module).

The module is executed from the source text nngraph generated, compiled here, never
through importlib's bytecode cache: a `__pycache__/*.pyc` planted beside the file
would otherwise run instead of it. The directory is the cache's, when only this
user can write it (codegen/cache.py), else a private temporary one.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile


_private = []


def cache_dir() -> str:
    from codegen.cache import cache_dir as base, trusted_dir
    d = trusted_dir(base()) and trusted_dir(base() / "triton")
    if d is None:   # not ours alone: a private directory for this process
        if not _private:
            _private.append(tempfile.mkdtemp(prefix="nngraph-triton-"))
        return _private[0]
    return str(d)


def module_name(source: str) -> str:
    return f"nngraph_triton_{hashlib.sha256(source.encode()).hexdigest()[:24]}"


def load(source: str):
    """The module made from `source` (cached by content)."""
    modname = module_name(source)
    mod = sys.modules.get(modname)
    if mod is not None:
        return mod
    path = os.path.join(cache_dir(), f"{modname}.py")
    from codegen.cache import read_trusted
    ok = read_trusted(path) == source.encode()
    if not ok:   # missing or corrupt: write it atomically
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    try:
        exec(compile(source, path, "exec"), mod.__dict__)  # our text, not a .pyc
    except BaseException:
        del sys.modules[modname]
        raise
    return mod
