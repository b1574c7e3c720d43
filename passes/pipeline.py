"""The pass pipeline: an ordered list of named passes per optimisation level.

A pass is a function `(Graph, Rewrites) -> Graph` (the Rewrites counter records
which rules fired). After every pass the graph is verified (passes/verify.py) and,
with `dump_dir`, written as `NN-passname.txt` (00-input.txt is the graph as
built); the log of what every pass did is what `fn.stats()["passes"]` shows.

    level 0  only what correctness needs
    level 1  + CSE, constant folding, algebraic simplification, and in an MPI job
             all_reduce means split into a sum and a scale that fuses into its consumers;
             one loop per forward scan and its gradient's twin (passes/scans.py; at
             level 0 both run); loop passes (work moved out of scans: before the loop,
             passes/loop_hoist.py; after it, passes/loop_sink.py)
    level 2  + numerical stabilisation, and a second round of everything

Every pass also runs inside the bodies of loops (passes/scans.py: `in_bodies`), first,
unless the pass function has `outer_only = True` (a pass that handles loops itself).
"""
from __future__ import annotations

import os
import time

from nngraph.graph import Graph
from nngraph.textir import format_graph

from . import rewrite
from .all_reduce_means import all_reduce_means
from .constant_folding import constant_folding
from .cse import cse
from .dce import dce, drop_stop_gradient
from .log import Rewrites, entry
from .loop_hoist import hoist_scans
from .loop_sink import sink_scans
from .rewrites import SIMPLIFY, STABILIZE
from .scans import in_bodies, merge_scan_twins, prune_scan_outputs
from .verify import verify


def simplify(graph: Graph, counts: Rewrites | None = None) -> Graph:
    """Algebraic and movement simplification (passes/rewrites/) to a fixed point."""
    return rewrite.rewrite(graph, SIMPLIFY, counts)


def stabilize_pass(graph: Graph, counts: Rewrites | None = None) -> Graph:
    """Numerical stabilisation (passes/rewrites/stabilize.py) to a fixed point."""
    return rewrite.rewrite(graph, STABILIZE, counts)


PIPELINES = {
    0: [
        ("dce", dce),
    ],
    1: [
        ("merge_scan_twins", merge_scan_twins),
        ("prune_scan_outputs", prune_scan_outputs),
        ("dce", dce),
        ("drop_stop_gradient", drop_stop_gradient),
        ("cse", cse),
        ("constant_folding", constant_folding),
        ("hoist_scans", hoist_scans),
        ("sink_scans", sink_scans),
        ("simplify", simplify),
        ("cse", cse),
        ("all_reduce_means", all_reduce_means),
        ("dce", dce),
    ],
    2: [
        ("merge_scan_twins", merge_scan_twins),
        ("prune_scan_outputs", prune_scan_outputs),
        ("dce", dce),
        ("drop_stop_gradient", drop_stop_gradient),
        ("cse", cse),
        ("constant_folding", constant_folding),
        ("simplify", simplify),
        ("cse", cse),               # the stabilising patterns match shared nodes by identity
        ("stabilize", stabilize_pass),
        ("hoist_scans", hoist_scans),
        ("sink_scans", sink_scans),
        ("simplify", simplify),
        ("constant_folding", constant_folding),
        ("cse", cse),
        ("all_reduce_means", all_reduce_means),
        ("dce", dce),
    ],
}


def passes_for(opt_level: int) -> list:
    """The (name, pass) list of an optimisation level."""
    if opt_level not in PIPELINES:
        raise ValueError(f"opt_level must be one of {sorted(PIPELINES)}, got {opt_level!r}")
    return list(PIPELINES[opt_level])


def optimize(graph: Graph, opt_level: int = 2, dump_dir=None, passes=None):
    """Run the passes of `opt_level` (or the given (name, pass) list) over `graph`;
    returns (graph, log). A pass that leaves an ill-formed graph raises VerifyError
    naming it."""
    passes = passes_for(opt_level) if passes is None else list(passes)
    if dump_dir is not None:
        os.makedirs(dump_dir, exist_ok=True)
        _dump(dump_dir, 0, "input", graph)
    verify(graph, "input")
    log = []
    size = len(graph.nodes())   # each graph's node count taken once (a walk of the graph)
    for k, (name, fn) in enumerate(passes, start=1):
        counts = Rewrites()
        t0 = time.perf_counter()
        new = (fn if getattr(fn, "outer_only", False) else in_bodies(fn))(graph, counts)
        seconds = time.perf_counter() - t0
        verify(new, name, before=graph)
        new_size = len(new.nodes())
        log.append(entry(name, seconds, counts, size, new_size))
        graph, size = new, new_size
        if dump_dir is not None:
            _dump(dump_dir, k, name, graph)
    return graph, log


def _dump(dump_dir, k: int, name: str, graph: Graph) -> None:
    with open(os.path.join(dump_dir, f"{k:02d}-{name}.txt"), "w") as f:
        f.write(format_graph(graph, locations=True))
