"""Find the user's line that built a node: the first stack frame outside nngraph.

A front end that builds nodes on a user's behalf (the ONNX importer) names its own
source instead, with `located_at("model.onnx:conv1 (Conv)")` around the building code.
"""
from __future__ import annotations

import contextlib
import os
import sys

_ROOTS = tuple(
    os.path.dirname(os.path.abspath(__file__)).rsplit(os.sep, 1)[0] + os.sep + pkg + os.sep
    for pkg in ("nngraph", "passes", "codegen", "runtime")
)
_OVERRIDE: list = []


def user_location() -> str:
    if _OVERRIDE:
        return _OVERRIDE[-1]
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_ROOTS) and "importlib" not in fn:
            return f"{os.path.basename(fn)}:{f.f_lineno}"
        f = f.f_back
    return "<nngraph>"


@contextlib.contextmanager
def located_at(where: str):
    """Nodes built inside take `where` as their source location."""
    _OVERRIDE.append(where)
    try:
        yield
    finally:
        _OVERRIDE.pop()
