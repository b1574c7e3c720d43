"""ng.compile: the one place that ties the four rooms together.

graph (nngraph) -> optimised graph and Program (passes) -> machine code (codegen)
-> Function (runtime).
"""
from __future__ import annotations

import contextlib
import gc
import sys
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
    from runtime.host_choices import retime_if_asked
    retime_if_asked()                      # NNGRAPH_RETIME=1: before any per-host choice is read
    with collector_paused():
        return _compile(inputs, outputs, updates, target, opt_level, cast_inputs, check_numerics, dump_dir, name)


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for the block, as it was after. A compile
    allocates many objects that live on (graph nodes, IR, imported modules), which
    is what sets off the collector's full passes over every object of the process:
    they were ~20-60 ms of a compile-cache hit's ~0.1-0.25 s. The few cycles a
    compile leaves are collected at the next collection after it (Mercurial's
    util.nogc does the same around its bulk loads)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _compile(inputs, outputs, updates, target, opt_level, cast_inputs, check_numerics, dump_dir, name):
    clock = _Clock()
    loaded_before = frozenset(sys.modules)      # what this compile imports is pristine (compile cache)
    graph, single = build_graph(inputs, outputs, updates, name)
    stages = {"graph": format_graph(graph)}
    checked, guards = add_index_guards(graph)
    clock.lap("trace")
    options = {"target": target, "opt_level": opt_level, "check_numerics": check_numerics}
    from runtime import compile_cache
    key = None
    if compile_cache.cacheable(target, graph, dump_dir):
        context = compile_cache.key_context(loaded_before)
        clock.lap("startup")
        params = compile_cache.param_names(graph)
        key = compile_cache.compile_key(compile_cache.key_text(graph, params), options, context)
        entry = compile_cache.load(key)
        clock.lap("cache_lookup")
        if entry is not None:
            compile_cache.adopt_names(entry, params)
            fn = _from_cache(entry, graph, single, checked, guards, stages, options, clock, cast_inputs)
            compile_cache.record_pristine(compile_cache.host_key(), loaded_before)
            return fn
        compile_cache.load_pipeline()
        clock.lap("startup")

    from passes.pipeline import optimize
    opt, log = optimize(checked, opt_level=opt_level, dump_dir=dump_dir)
    stages["opt"] = format_graph(opt)
    clock.lap("passes")

    from runtime.targets import build_runner
    runner, more_stages = build_runner(target, opt, check_numerics=check_numerics, opt_level=opt_level,
                                       dump_dir=dump_dir)
    backend_stages = runner.stats.pop("compile_time", None)
    if backend_stages is None:
        clock.lap("codegen")      # a backend that does not break its time down
    else:
        clock.add(backend_stages)
    compiled = getattr(runner, "compiled", None)
    if guards:
        from runtime.index_check import IndexCheckedRunner
        runner = IndexCheckedRunner(runner, guards, list(opt.inputs))
    stages.update(more_stages)

    from .report.compiled import CompiledFunction
    stats = clock.stats(log, opt_level)
    fn = CompiledFunction(graph, runner, target, cast_inputs=cast_inputs, stats=stats, stages=stages,
                          run_graph=opt, single=single)
    if key is not None:
        _remember(key, fn, compiled, checked, log, params)
        compile_cache.record_pristine(compile_cache.host_key(), loaded_before)
    return fn


def _from_cache(entry, graph, single, checked, guards, stages, options, clock, cast_inputs):
    """The Function of a compile-cache hit: the stored Program and object code loaded;
    the optimised graph and the node map rebuilt only if something asks for them."""
    from runtime.compile_cache import LazyNodeMap, Rebuild
    from runtime.cpu import build_loaded
    rebuild = Rebuild(checked, options["opt_level"])
    program = entry.program
    program.nodes = LazyNodeMap(rebuild)
    facts = entry.facts
    runner, more_stages = build_loaded(program, entry.obj, facts["library_calls"], options["check_numerics"],
                                       facts["profile"])
    clock.add(runner.stats.pop("compile_time"))
    if guards:
        from runtime.index_check import IndexCheckedRunner
        runner = IndexCheckedRunner(runner, guards, list(checked.inputs))
    stages["opt"] = lambda: format_graph(rebuild.opt_graph())
    stages.update(more_stages)
    params = graph.params()
    run_state = ([params[i] for i in facts["run_params"]], [params[i] for i in facts["run_updated"]])
    from .report.compiled import CompiledFunction
    return CompiledFunction(graph, runner, "cpu", cast_inputs=cast_inputs,
                            stats=clock.stats(facts["passes"], options["opt_level"]), stages=stages,
                            run_graph=rebuild.opt_graph, single=single, run_state=run_state,
                            fusion=facts["fusion"])


def _remember(key, fn, compiled, checked, log, params) -> None:
    """Store what a later hit needs, when the hit can rebuild the same Function: the
    optimised graph reads the graph's own placeholders and parameters."""
    from runtime.compile_cache import store
    opt = fn.opt_graph
    index = {id(p): i for i, p in enumerate(fn.graph.params())}
    run_params = [index.get(id(p)) for p in opt.params()]
    run_updated = [index.get(id(p)) for p, _ in opt.updates]
    same_inputs = len(opt.inputs) == len(checked.inputs) and all(a is b for a, b in zip(opt.inputs, checked.inputs))
    if None in run_params or None in run_updated or not same_inputs:
        return
    facts = {"library_calls": compiled.stats["library_calls"], "profile": compiled.profiled, "passes": log,
             "run_params": run_params, "run_updated": run_updated, "fusion": list(fn.fusion()),
             "params": params}
    store(key, compiled.program, compiled.object_code, facts)


class _Clock:
    """Seconds per compile stage, for fn.stats()["compile_time"] (a dict in stage order:
    trace, startup (imports and LLVM's start, at a process's first compile),
    cache_lookup, passes, then the backend's: lowering, memory_plan, llvm_ir,
    object_cache, llvm_optimize, machine_code, load) and the total, compile_seconds."""

    def __init__(self):
        self.t0 = self.last = time.perf_counter()
        self.stages = {}

    def lap(self, stage: str) -> float:
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + now - self.last
        self.last = now
        return self.stages[stage]

    def add(self, stages: dict) -> None:
        """Stages timed elsewhere (the backend's), which together took the time since the last lap."""
        for k, v in stages.items():
            self.stages[k] = self.stages.get(k, 0.0) + v
        self.last = time.perf_counter()

    def stats(self, log, opt_level) -> dict:
        total = time.perf_counter() - self.t0
        return {"compile_seconds": total, "compile_time": dict(self.stages), "passes": log,
                "opt_level": opt_level}


def forget_host_choices() -> list:
    """Drop the choices measured once per host (conv layouts, the BLAS, thread costs)
    and the compiled functions made with them from the cache directory, so that they
    are timed again (runtime/host_choices.py); the names of the files deleted."""
    from runtime.host_choices import forget_host_choices as forget
    return forget()


def target_available(target: str):
    """(ok, why not): can `target` compile in this process?"""
    from runtime.targets import available
    return available(target)


def is_compiled(obj) -> bool:
    """Is obj a compiled Function (what compile returns)?"""
    from runtime.function import Function
    return isinstance(obj, Function)
