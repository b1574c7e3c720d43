"""Rows of dicts that print as an aligned text table: what `fn.stats()["fusion"]`
and `fn.profile()` hand the user, readable with print() and usable as data."""
from __future__ import annotations


def format_rows(rows: list, columns: list, widths: dict | None = None) -> str:
    """An aligned table of `columns` (key, heading) pairs; a cell longer than its
    width in `widths` (key -> characters) is cut with an ellipsis."""
    widths = widths or {}

    def cell(row, key):
        v = row.get(key, "")
        s = ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        w = widths.get(key)
        return s if w is None or len(s) <= w else s[:w - 1] + "…"
    cells = [[cell(r, k) for k, _ in columns] for r in rows]
    heads = [h for _, h in columns]
    size = [max([len(h)] + [len(c[j]) for c in cells]) for j, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(size[j]) for j, h in enumerate(heads)).rstrip()]
    lines.append("  ".join("-" * s for s in size))
    lines += ["  ".join(c[j].ljust(size[j]) for j in range(len(heads))).rstrip() for c in cells]
    return "\n".join(lines)


class RowList(list):
    """A list of row dicts whose str() is the table (print(fn.stats()["fusion"]))."""

    columns: list = []
    widths: dict = {}

    def __str__(self) -> str:
        if not self:
            return "(none)"
        return format_rows(self, self.columns, self.widths)


class FusionRows(RowList):
    """fn.stats()["fusion"]: every node not fused into its consumer, with why."""

    columns = [("node", "node"), ("op", "op"), ("type", "type"), ("where", "built at"),
               ("kernel", "kernel"), ("reason", "why it is stored")]
    widths = {"reason": 70, "kernel": 30}


class TextTable(str):
    """A str (the table) that also carries the rows as dicts (`.rows`) and any
    extra facts (`.info`)."""

    rows: list
    info: dict

    def __new__(cls, text: str, rows: list, info: dict | None = None):
        s = super().__new__(cls, text)
        s.rows, s.info = rows, dict(info or {})
        return s
