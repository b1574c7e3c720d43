"""Function: what ng.compile returns. Backend-independent: validation, binding of
symbolic sizes, atomic updates, stats and dumps. The backend supplies a Runner."""
from __future__ import annotations

import threading
import warnings

import numpy as np

from nngraph.errors import InputError
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

    def __init__(self, graph, runner: Runner, target: str, cast_inputs: bool = False, stats=None, stages=None):
        self.graph = graph
        self.target = target
        self.runner = runner
        self.cast_inputs = cast_inputs
        self.inputs = list(graph.inputs)
        self.params = graph.params()
        self.updated = [p for p, _ in graph.updates]
        self._names = {ph.name: i for i, ph in enumerate(self.inputs) if ph.name}
        self._dtypes = [np_dtype(ph.dtype) for ph in self.inputs]
        self._stats = dict(stats or {})
        self._stages = dict(stages or {})
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ calling
    def _collect(self, args, kwargs) -> list:
        if len(args) > len(self.inputs):
            raise InputError(f"{len(self.inputs)} inputs expected ({self._signature()}), {len(args)} given")
        vals = list(args) + [None] * (len(self.inputs) - len(args))
        given = [True] * len(args) + [False] * (len(self.inputs) - len(args))
        for k, v in kwargs.items():
            i = self._names.get(k)
            if i is None:
                raise InputError(f"no input named '{k}' (inputs: {self._signature()})")
            if given[i]:
                raise InputError(f"input '{k}' given twice")
            vals[i], given[i] = v, True
        for i, g in enumerate(given):
            if not g:
                ph = self.inputs[i]
                raise InputError(f"input '{ph.name or i}' ({ph.type}) was not given")
        return vals

    def _signature(self) -> str:
        return ", ".join(f"{ph.name or '_'}: {ph.type}" for ph in self.inputs)

    def _check(self, vals) -> list:
        out = []
        for ph, want, v in zip(self.inputs, self._dtypes, vals):
            if not isinstance(v, np.ndarray):
                try:
                    v = np.asarray(v, dtype=want)
                except (TypeError, ValueError) as e:
                    raise InputError(f"input '{ph.name}': expected {ph.type}, got {type(v).__name__}: {e}") from None
            if v.dtype != want:
                if self.cast_inputs and np.can_cast(v.dtype, want, casting="same_kind"):
                    warnings.warn(f"input '{ph.name}': casting {v.dtype} to {want}", stacklevel=3)
                    v = v.astype(want)
                else:
                    hint = " (pass cast_inputs=True to ng.compile to allow the cast)" if np.can_cast(
                        v.dtype, want, casting="same_kind") else ""
                    raise InputError(f"input '{ph.name}': expected {ph.type}, got {_given(v)}: dtype {v.dtype} "
                                     f"is not {want}{hint}")
            if not v.flags.c_contiguous:
                v = np.ascontiguousarray(v)
            out.append(v)
        return out

    def __call__(self, *args, **kwargs):
        vals = self._check(self._collect(args, kwargs))
        env = bind_dims(self.inputs, vals)
        with self._lock:
            params = [p.value for p in self.params]
            outs, new = self.runner.run(vals, params, env)
            # commit: every update was computed from the old values; apply all at once
            for p, v in zip(self.updated, new):
                p._state["value"] = v
        if len(self.graph.outputs) == 1 and self._single:
            return outs[0]
        return outs

    _single = False

    # ------------------------------------------------------------------ inspecting
    def stages(self) -> list:
        return list(self._stages)

    def dump(self, stage: str = "graph") -> str:
        if stage not in self._stages:
            raise ValueError(f"no stage '{stage}' for target {self.target}; stages: {', '.join(self._stages)}")
        s = self._stages[stage]
        return s() if callable(s) else s

    def stats(self) -> dict:
        out = {"kernels": 0, "library_calls": 0, "peak_bytes": 0, "compile_seconds": 0.0, "cache_hit": False}
        out.update(self._stats)
        out.update(getattr(self.runner, "stats", {}) or {})
        return out
