"""Reports a user opens in a browser: what the compiler made of a function
(`fn.report(path)`) and how training went (`model.fit(..., report=path)`).
One self-contained HTML file each; the layout and the SVG are drawn here.

`report_html` and `write_report` are imported on first use: every ng.compile makes a
CompiledFunction (report/compiled.py, in this package), and a compile-cache hit
should not pay for the report's imports (the passes, difflib)."""


def __getattr__(name):
    if name in ("report_html", "write_report"):
        from . import function_report
        return getattr(function_report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
