"""The Function that ng.compile returns: the runtime's Function (runtime/) plus
what only the user-facing layer can do with it, drawing its report."""
from __future__ import annotations

from runtime.function import Function


class CompiledFunction(Function):
    def report(self, path, title: str | None = None) -> str:
        """Write one self-contained HTML file showing what the compiler made of this
        function (graph before and after the passes, kernels, code, memory plan,
        profile when fn.profile() has run, unfused nodes); returns the path."""
        from .function_report import write_report    # not at import: a compile-cache hit's start
        return write_report(self, path, title)
