"""What each pass did, so a user can see why the compiler did what it did.

A pass counts its rewrites in a `Rewrites` (a Counter of rule name -> firings)
that the pipeline hands it; the pipeline turns each pass's counts into one log
entry {pass, seconds, rewrites, nodes_before, nodes_after}, which
`fn.stats()["passes"]` carries.
"""
from __future__ import annotations

from collections import Counter


class Rewrites(Counter):
    """Rule name -> how many times it fired in one pass."""

    def fired(self, rule: str, times: int = 1) -> None:
        self[rule] += times


def entry(name: str, seconds: float, rewrites: Counter, nodes_before: int, nodes_after: int) -> dict:
    """One log line: the pass, its time, its rewrite counts (sorted by rule) and the graph size."""
    return {"pass": name, "seconds": seconds,
            "rewrites": {k: int(v) for k, v in sorted(rewrites.items()) if v},
            "nodes_before": nodes_before, "nodes_after": nodes_after}


def format_log(log: list) -> str:
    """The log as a small table, one pass per line (for the CLI and for people)."""
    lines = []
    for k, e in enumerate(log, start=1):
        rw = ", ".join(f"{r} x{c}" for r, c in e["rewrites"].items()) or "-"
        lines.append(f"{k:02d} {e['pass']:<20} {e['nodes_before']:>5} -> {e['nodes_after']:<5} "
                     f"{e['seconds'] * 1e3:7.2f} ms  {rw}")
    return "\n".join(lines)


def total_rewrites(log: list) -> Counter:
    """Every rule's firings summed over the whole pipeline."""
    out = Counter()
    for e in log:
        out.update(e["rewrites"])
    return out
