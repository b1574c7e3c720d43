"""Find the user's line that built a node: the first stack frame outside nngraph."""
from __future__ import annotations

import os
import sys

_ROOTS = tuple(
    os.path.dirname(os.path.abspath(__file__)).rsplit(os.sep, 1)[0] + os.sep + pkg + os.sep
    for pkg in ("nngraph", "passes", "codegen", "runtime")
)


def user_location() -> str:
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_ROOTS) and "importlib" not in fn:
            return f"{os.path.basename(fn)}:{f.f_lineno}"
        f = f.f_back
    return "<nngraph>"
