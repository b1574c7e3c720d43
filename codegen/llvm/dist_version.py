"""What an installed Python distribution (scipy, mkl) is: its version and the files
it installed, read from its metadata folder (`mkl-2026.2.0.dist-info`: the name
gives the version, RECORD lists the files) on sys.path. importlib.metadata gives the
same answers but costs ~10-20 ms to import and scan, and importing scipy for its
version ~10 ms: all were part of every process's first compile, a compile-cache
hit's too (the key of the BLAS choice, finding libmkl_rt). Where the folder is not
found once and plainly (an egg, two versions side by side), importlib.metadata
answers."""
from __future__ import annotations

import csv
import os
import sys


def metadata_folder(dist: str):
    """(site directory, version) of the one `<dist>-<version>.dist-info` folder in the
    first sys.path entry that holds any, or None (none, or several there)."""
    prefix, suffix = f"{dist}-", ".dist-info"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        versions = [n[len(prefix):-len(suffix)] for n in names if n.startswith(prefix) and n.endswith(suffix)]
        versions = [v for v in versions if v and "-" not in v]
        if versions:
            return (entry or ".", versions[0]) if len(versions) == 1 else None
    return None


def installed_version(dist: str) -> str:
    """The version of distribution `dist`, as importlib.metadata.version gives it; ""
    when it is not installed."""
    found = metadata_folder(dist)
    if found is not None:
        return found[1]
    import importlib.metadata as md
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return ""


def installed_files(dist: str):
    """Absolute paths of the files distribution `dist` installed (its RECORD), or None
    when its metadata folder is not found plainly (the caller asks importlib.metadata)."""
    found = metadata_folder(dist)
    if found is None:
        return None
    site, version = found
    try:
        with open(os.path.join(site, f"{dist}-{version}.dist-info", "RECORD"), newline="") as f:
            rows = list(csv.reader(f))
    except OSError:
        return None
    return [os.path.normpath(os.path.join(site, row[0])) for row in rows if row]
