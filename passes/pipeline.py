"""The pass pipeline: an ordered list of named passes per optimisation level."""
from __future__ import annotations


def optimize(graph, opt_level=2, dump_dir=None):
    """Run the passes of `opt_level` over `graph`; returns (graph, log)."""
    return graph, []
