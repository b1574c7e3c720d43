"""Reports a user opens in a browser: what the compiler made of a function
(`fn.report(path)`) and how training went (`model.fit(..., report=path)`).
One self-contained HTML file each; the layout and the SVG are drawn here."""
from .function_report import report_html, write_report  # noqa: F401
