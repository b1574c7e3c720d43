"""Which backend builds the Runner for each target.

Each target is a module with `build(graph, options) -> (runner, stages)` where
`stages` maps extra dump-stage names ("kernels", "llvm", "asm", "triton") to text
or to a callable returning text. A target whose module cannot be imported (a
missing optional dependency) is reported as unavailable with the reason.
"""
from __future__ import annotations

import importlib

TARGET_MODULES = {
    "reference": "runtime.reference",
    "cpu": "runtime.cpu",
    "gpu": "runtime.gpu",
}


def available(target: str) -> tuple[bool, str]:
    """(True, "") if `target` can be built here, else (False, why)."""
    mod = TARGET_MODULES.get(target)
    if mod is None:
        return False, f"unknown target {target!r}"
    try:
        importlib.import_module(mod)
    except ImportError as e:
        return False, f"target {target!r} is not available: {e}"
    return True, ""


def build_runner(target, graph, **options):
    """Returns (runner, extra dump stages {name: text or callable})."""
    ok, why = available(target)
    if not ok:
        raise ValueError(why)
    return importlib.import_module(TARGET_MODULES[target]).build(graph, options)
