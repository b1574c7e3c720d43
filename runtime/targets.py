"""Which backend builds the Runner for each target."""
from __future__ import annotations


def build_runner(target, graph, check_numerics=False, opt_level=2, dump_dir=None):
    """Returns (runner, extra dump stages {name: text or callable})."""
    if target == "reference":
        from .reference import GraphInterpreterRunner
        return GraphInterpreterRunner(graph, check_numerics), {}
    raise ValueError(f"target {target!r} is not available yet")
