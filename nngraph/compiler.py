"""ng.compile: the one place that ties the four rooms together.

graph (nngraph) -> optimised graph and Program (passes) -> machine code (codegen)
-> Function (runtime).
"""
from __future__ import annotations

import time

import numpy as np

from .errors import ShapeError
from .graph import Graph
from .node import Parameter, Tensor
from .ops import elementwise as ew
from .index_guards import add_index_guards
from .size_unify import unify
from .textir import format_graph

TARGETS = ("cpu", "gpu", "reference")


def build_graph(inputs, outputs, updates=None, name="main") -> tuple[Graph, bool]:
    """Check what the user passed and make a Graph; returns (graph, single_output)."""
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs or [])
    for x in inputs:
        if not isinstance(x, Tensor) or x.op != "placeholder":
            raise TypeError(f"compile: inputs must be placeholders, got {x!r}")
    names = [x.name for x in inputs if x.name]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"compile: two inputs share the name {sorted(dup)[0]!r}")
    single = isinstance(outputs, Tensor) or not isinstance(outputs, (list, tuple))
    outs = [outputs] if single else list(outputs)
    outs = [ew.as_tensor(o) for o in outs]
    ups = []
    items = updates.items() if isinstance(updates, dict) else (updates or [])
    for p, v in items:
        if not isinstance(p, Parameter):
            raise TypeError(f"compile: updates must map parameters to new values, got key {p!r}")
        v = ew.as_tensor(v, like=p)
        if tuple(v.shape) != tuple(p.shape):
            raise ShapeError(f"compile: update of parameter {p.name}: {p.type} has shape "
                             f"[{','.join(map(str, v.shape))}] (built at {v.where})")
        if v.dtype != p.dtype:
            v = ew.cast(v, p.dtype)
        ups.append((p, v))
    if len({id(p) for p, _ in ups}) != len(ups):
        raise ValueError("compile: a parameter is updated twice")
    g = Graph(inputs, outs, ups, name)
    # the dropout step counter advances on every call unless the user updates it
    from .ops.random import RNG_COUNTER_NAME
    updated = {id(p) for p, _ in ups}
    for p in g.params():
        if p.name == RNG_COUNTER_NAME and p._state.get("auto_increment") and id(p) not in updated:
            g.updates.append((p, ew.add(p, np.asarray(1, dtype=p.value.dtype))))
    missing = [n for n in g.nodes() if n.op == "placeholder" and not any(n is i for i in inputs)]
    if missing:
        m = missing[0]
        raise ValueError(f"compile: the outputs need placeholder '{m.name}' ({m.type}, made at {m.where}) "
                         "which is not among the inputs")
    return unify(g), single


def compile(inputs, outputs, updates=None, target="cpu", opt_level=2, cast_inputs=False,
            check_numerics=False, dump_dir=None, name="main"):
    """Compile a graph into a callable Function (docs/compile.md is the user guide)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if opt_level not in (0, 1, 2):
        raise ValueError(f"opt_level must be 0, 1 or 2, got {opt_level!r}")
    t0 = time.perf_counter()
    graph, single = build_graph(inputs, outputs, updates, name)
    stages = {"graph": format_graph(graph)}

    from passes.pipeline import optimize
    checked, guards = add_index_guards(graph)
    opt, log = optimize(checked, opt_level=opt_level, dump_dir=dump_dir)
    stages["opt"] = format_graph(opt)

    from runtime.targets import build_runner
    runner, more_stages = build_runner(target, opt, check_numerics=check_numerics, opt_level=opt_level,
                                       dump_dir=dump_dir)
    if guards:
        from runtime.index_check import IndexCheckedRunner
        runner = IndexCheckedRunner(runner, guards, list(opt.inputs))
    stages.update(more_stages)

    from .report.compiled import CompiledFunction
    stats = {"compile_seconds": time.perf_counter() - t0, "passes": log, "opt_level": opt_level}
    fn = CompiledFunction(graph, runner, target, cast_inputs=cast_inputs, stats=stats, stages=stages,
                          run_graph=opt, single=single)
    fn.opt_graph = opt
    return fn


def target_available(target: str):
    """(ok, why not): can `target` compile in this process?"""
    from runtime.targets import available
    return available(target)


def is_compiled(obj) -> bool:
    """Is obj a compiled Function (what compile returns)?"""
    from runtime.function import Function
    return isinstance(obj, Function)
