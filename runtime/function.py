"""Function: what ng.compile returns. Backend-independent: validation, binding of
symbolic sizes, atomic updates, stats and dumps. The backend supplies a Runner."""
from __future__ import annotations

import threading
import warnings

import numpy as np

from nngraph.errors import InputError, NumericsError
from nngraph.interpreter import _given, bind_dims
from nngraph.types import np_dtype


class Runner:
    """A backend's compiled program. Subclasses implement `run`.

    run(inputs, params, env) -> (outputs, new_values): `inputs` are validated
    contiguous arrays, `params` the current parameter arrays (in Function.params
    order), `env` the bound symbolic sizes; `new_values` are the updated values for
    Function.updated (in that order). It must not modify `params` unless it returns
    normally (the Function commits by replacing arrays, so in-place writes are allowed
    only into buffers the runner owns).
    """

    stages: dict = {}
    stats: dict = {}

    def run(self, inputs, params, env):  # pragma: no cover - interface
        raise NotImplementedError


class Function:
    """A compiled graph. Call it with arrays by position or by placeholder name."""

    def __init__(self, graph, runner: Runner, target: str, cast_inputs: bool = False, stats=None, stages=None,
                 run_graph=None, single: bool = False):
        self.graph = graph
        self._single = single          # ng.compile got one output, not a list: return it bare
        self.target = target
        self.runner = runner
        self.cast_inputs = cast_inputs
        self.inputs = list(graph.inputs)
        self.params = graph.params()
        self.updated = [p for p, _ in graph.updates]
        # the runner was built from the optimised graph, whose parameter list may be
        # shorter (a pass dropped a read) or ordered differently: feed it in its order
        run_graph = run_graph or graph
        self._run_graph = run_graph
        self._last = None             # (checked inputs, sizes) of the last call, for profile()
        self._run_params = run_graph.params()
        self._run_updated = [p for p, _ in run_graph.updates]
        self._names = {ph.name: i for i, ph in enumerate(self.inputs) if ph.name}
        self._dtypes = [np_dtype(ph.dtype) for ph in self.inputs]
        self._stats = dict(stats or {})
        self._stages = dict(stages or {})
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ calling
    def _label(self, i: int) -> str:
        return self.inputs[i].name or f"#{i}"

    def _collect(self, args, kwargs) -> list:
        """Match positional and keyword arguments to placeholders."""
        if len(args) > len(self.inputs):
            raise InputError(f"{len(self.inputs)} input{'s' if len(self.inputs) != 1 else ''} expected "
                             f"({self._signature()}), {len(args)} given")
        vals = list(args) + [None] * (len(self.inputs) - len(args))
        given = [True] * len(args) + [False] * (len(self.inputs) - len(args))
        for k, v in kwargs.items():
            i = self._names.get(k)
            if i is None:
                raise InputError(f"no input named '{k}'; the inputs are ({self._signature()})")
            if given[i]:
                raise InputError(f"input '{k}' given twice: by position (argument {i}) and by keyword")
            vals[i], given[i] = v, True
        missing = [i for i, g in enumerate(given) if not g]
        if missing:
            i = missing[0]
            others = "" if len(missing) == 1 else f" (also missing: {', '.join(self._label(j) for j in missing[1:])})"
            raise InputError(f"missing input '{self._label(i)}': expected {self.inputs[i].type}, nothing given"
                             f"{others}; the inputs are ({self._signature()})")
        return vals

    def _signature(self) -> str:
        return ", ".join(f"{self._label(i)}: {ph.type}" for i, ph in enumerate(self.inputs))

    def _check(self, vals) -> list:
        """Arrays of the placeholders' dtypes, C-contiguous. Python scalars and lists
        have no dtype of their own and convert within their kind (ints to floats, floats
        to float32); a NumPy array of another dtype is an error, or a cast with a warning
        under cast_inputs=True when the cast keeps the kind (float64 -> float32)."""
        out = []
        for i, (ph, want, v) in enumerate(zip(self.inputs, self._dtypes, vals)):
            label = self._label(i)
            if not isinstance(v, np.ndarray):
                try:
                    a = np.asarray(v)
                except (TypeError, ValueError) as e:
                    raise InputError(f"input '{label}': expected {ph.type}, got {type(v).__name__} that is "
                                     f"not an array: {e}") from None
                if a.dtype == object or not np.can_cast(a.dtype, want, casting="same_kind"):
                    raise InputError(f"input '{label}': expected {ph.type}, got a {type(v).__name__} of "
                                     f"{a.dtype} values, shape {list(a.shape)}")
                v = a.astype(want, copy=False)
            if v.dtype != want:
                castable = v.dtype != object and np.can_cast(v.dtype, want, casting="same_kind")
                if self.cast_inputs and castable:
                    warnings.warn(f"input '{label}': casting {v.dtype} to {want} (expected {ph.type}, "
                                  f"got {_given(v)})", stacklevel=3)
                    v = v.astype(want)
                else:
                    hint = (" (pass cast_inputs=True to ng.compile to allow this cast)" if castable else
                            " (cast it yourself if the conversion is intended)")
                    raise InputError(f"input '{label}': expected {ph.type}, got {_given(v)}: dtype {v.dtype} "
                                     f"is not {want}{hint}")
            if not v.flags.c_contiguous:
                v = np.ascontiguousarray(v)
            out.append(v)
        return out

    def __call__(self, *args, **kwargs):
        vals = self._check(self._collect(args, kwargs))
        env = bind_dims(self.inputs, vals)
        with self._lock:
            self._last = (vals, env)
            params = [p.value for p in self._run_params]
            try:
                outs, new = self.runner.run(vals, params, env)
            except NumericsError as e:
                from .numerics import in_graph_terms
                better = in_graph_terms(self._run_graph, getattr(self.runner, "program", None), e, vals,
                                        params, env)
                if better is e:
                    raise
                raise better from e
            # commit: every update was computed from the old values; apply all at once
            fed = {id(a) for a in vals}
            for p, v in zip(self._run_updated, new):
                p._state["value"] = np.array(v) if id(v) in fed else v  # never keep the caller's array
        # an output that is a parameter's array (old or new) is copied, so the caller
        # cannot change the parameter through it
        state = {id(a) for a in params} | {id(a) for a in new}
        outs = [np.array(o) if id(o) in state else o for o in outs]
        if len(self.graph.outputs) == 1 and self._single:
            return outs[0]
        return outs

    # ------------------------------------------------------------------ inspecting
    def stages(self) -> list:
        return list(self._stages)

    def dump(self, stage: str = "graph") -> str:
        if stage not in self._stages:
            raise ValueError(f"no stage '{stage}' for target {self.target}; stages: {', '.join(self._stages)}")
        s = self._stages[stage]
        return s() if callable(s) else s

    def stats(self) -> dict:
        """kernels, library_calls, peak_bytes, compile_seconds, cache_hit, passes (the
        pipeline's log) and fusion: every node not fused into its consumer, with why
        and the file:line that built it (a list of dicts that prints as a table)."""
        out = {"kernels": 0, "library_calls": 0, "peak_bytes": 0, "compile_seconds": 0.0, "cache_hit": False}
        out.update(self._stats)
        out.update(getattr(self.runner, "stats", {}) or {})
        out["fusion"] = self.fusion()
        return out

    def fusion(self):
        """The nodes kept apart from their consumers (fn.stats()["fusion"]); a copy of
        the rows worked out on first use (the program never changes)."""
        from .tables import FusionRows
        if self._fusion is None:
            program = getattr(self.runner, "program", None)
            if program is None or program.nodes is None:
                self._fusion = []
            else:
                from nngraph.textir import value_names
                from passes.kernel_map import unfused
                g = self._run_graph
                roots = {id(o) for o in g.outputs} | {id(v) for _, v in g.updates}
                self._fusion = unfused(program.nodes, roots, program.schedule, value_names(g))
        return FusionRows(dict(r) for r in self._fusion)

    _fusion = None

    def profile(self, *args, calls: int = 100, **kwargs):
        """Run the function `calls` times and return a table (a str, with `.rows` as
        dicts and `.info`) of its kernels and library calls: share of the time, time
        per call, FLOP/s and GB/s, the graph nodes each computes with their file:line.
        Takes inputs as a call does; with none, the inputs of the last call (the
        function keeps a reference to them for this). The parameters are read,
        never updated."""
        from .profiling import profile
        if args or kwargs:
            vals = self._check(self._collect(args, kwargs))
            env = bind_dims(self.inputs, vals)
        elif self._last is not None:
            vals, env = self._last
        elif not self.inputs:
            vals, env = [], {}
        else:
            raise InputError(f"profile: give the inputs ({self._signature()}) or call the function once first")
        with self._lock:
            table = profile(self, vals, env, calls)
        self.last_profile = table
        return table

    last_profile = None
