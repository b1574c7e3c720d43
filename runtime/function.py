"""Function: what ng.compile returns. Backend-independent: validation, binding of
symbolic sizes, atomic updates, stats and dumps. The backend supplies a Runner."""
from __future__ import annotations

import collections
import itertools
import operator
import threading
import warnings

import numpy as np

from nngraph.errors import InputError, NumericsError
from nngraph.interpreter import _given, bind_dims
from nngraph.types import np_dtype

from .checks import call_checks, reads_values
from .update_locks import update_locks

_CHUNK = 8   # locks one `with` statement takes at most (lock_chunks pads the last chunk)


def lock_chunks(locks) -> tuple:
    """`locks` as a tuple of chunks for `locked`: 8-tuples, the last one of 1, 2, 4 or 8
    locks, padded with fresh private locks (uncontended: taking one is a C call of well
    under a microsecond), so that a call takes all its locks in one `with` statement per
    8, not one Python call per lock, and a function with one lock takes one."""
    locks = tuple(locks)
    chunks = [locks[i:i + _CHUNK] for i in range(0, len(locks), _CHUNK)]
    if chunks:
        size = next(n for n in (1, 2, 4, _CHUNK) if n >= len(chunks[-1]))
        chunks[-1] += tuple(threading.Lock() for _ in range(size - len(chunks[-1])))
    return tuple(chunks)


def locked(chunks, fn, *args):
    """fn(*args) holding every lock of `chunks` (lock_chunks' tuples, in that order).
    One `with` statement per chunk, whose enters and exits run in C: a
    KeyboardInterrupt cannot leave one of the locks held."""
    if not chunks:
        return fn(*args)
    first, rest = chunks[0], chunks[1:]
    if len(first) == 1:
        with first[0]:
            return fn(*args)          # a short chunk is the last one
    if len(first) == 2:
        a, b = first
        with a, b:
            return fn(*args)
    if len(first) == 4:
        a, b, c, d = first
        with a, b, c, d:
            return fn(*args)
    a, b, c, d, e, f, g, h = first
    with a, b, c, d, e, f, g, h:
        return locked(rest, fn, *args) if rest else fn(*args)


_VALUE = "value"
_value_of = operator.itemgetter(_VALUE)   # a parameter's state -> its value


def commit(states, values) -> None:
    """Store every new parameter value in one C-level call: map and deque run no
    bytecode between two stores, so no Python signal handler (Ctrl-C's
    KeyboardInterrupt) can run in the middle and leave some parameters updated and
    others not. An interrupt lands before the call (nothing stored) or after it (all)."""
    collections.deque(map(dict.__setitem__, states, itertools.repeat(_VALUE), values), maxlen=0)


class Runner:
    """A backend's compiled program. Subclasses implement `run`.

    run(inputs, params, env) -> (outputs, new_values): `inputs` are validated
    contiguous arrays (NumPy, or what the runner's `device_array` made of a device
    array), `params` the current parameter values (in Function.params order: NumPy
    arrays, or the states as they are when `keeps_device_values`), `env` the bound
    symbolic sizes; `new_values` are the updated values (arrays, or objects with
    `to_numpy()` that the parameters then hold) for
    Function.updated (in that order). Where the runner answers `input_key`, an input
    may also be the caller's device array itself: a call whose inputs have the keys of
    an earlier call that passed every check (as device arrays, uncopied) skips the
    checks and the binding of sizes, and hands the arrays over as they are. It must not modify `params` unless it returns
    normally (the Function commits by replacing arrays, so in-place writes are allowed
    only into buffers the runner owns).
    """

    stages: dict = {}
    stats: dict = {}
    # whether run() takes parameter states as they are (a DeviceValue of the runner's
    # own making included) rather than as NumPy arrays
    keeps_device_values = False
    # whether every output and update run() returns is an object of its own making, never
    # an input or a parameter's value (then Function copies none of them)
    fresh_results = False

    def run(self, inputs, params, env):  # pragma: no cover - interface
        raise NotImplementedError

    def input_keys(self, args):
        """A hashable summary of the call's arguments from a few attribute reads per
        argument (type, shape, dtype, device) when every one is a device array this runner
        takes as it is, else None. Two calls with equal keys pass or fail Function's
        checks of types and sizes alike, so the sizes bound for a tuple of keys are kept
        and reused (Function._signatures)."""
        return None

    def device_array(self, value, label: str, expected: str):
        """`value` as an input this runner takes without converting it to NumPy (a device
        tensor on target="gpu"), or None: then it goes through NumPy's checks."""
        return None

    def to_device(self, array):
        """`array` where this runner reads inputs without a copy: a C-contiguous NumPy
        array for the host targets."""
        return np.ascontiguousarray(array)

    def fits_on_device(self, nbytes: int) -> bool:
        """Whether `nbytes` more can be kept where the runner computes (the host: yes)."""
        return True

    def concatenate(self, arrays):
        """`arrays` (outputs of this runner) joined along their first axis where they are."""
        return np.concatenate(arrays)

    def to_host(self, array) -> np.ndarray:
        """`array` (an output of this runner) as a NumPy array."""
        return np.asarray(array)


def _check_fits(label, ph, a, want) -> None:
    """Integers converted to a narrower integer dtype must fit: a cast would wrap
    (2**32 + 1 becomes 1 in int32) and silently change the value."""
    if a.dtype.kind not in "iu" or want.kind not in "iu" or a.size == 0:
        return
    info = np.iinfo(want)
    if np.can_cast(a.dtype, want, casting="safe"):
        return
    lo, hi = a.min(), a.max()
    if lo < info.min or hi > info.max:
        bad = int(lo) if lo < info.min else int(hi)
        raise InputError(f"input '{label}': expected {ph.type}, got the value {bad}, which does not fit "
                         f"in {want} ({info.min} to {info.max})")


class Function:
    """A compiled graph. Call it with arrays by position or by placeholder name."""

    def __init__(self, graph, runner: Runner, target: str, cast_inputs: bool = False, stats=None, stages=None,
                 run_graph=None, single: bool = False, run_state=None, fusion=None):
        self.graph = graph
        self._single = single          # ng.compile got one output, not a list: return it bare
        self.target = target
        self.runner = runner
        self.cast_inputs = cast_inputs
        self.inputs = list(graph.inputs)
        self.params = graph.params()
        self.updated = [p for p, _ in graph.updates]
        # the runner was built from the optimised graph, whose parameter list may be
        # shorter (a pass dropped a read) or ordered differently: feed it in its order.
        # A compile-cache hit passes a function that rebuilds that graph (called only if
        # something asks for it) and run_state = (its params, its updated params).
        run_graph = run_graph or graph
        self._run_graph_or_make = run_graph
        self._last = None             # (checked inputs, sizes) of the last call, for profile()
        if run_state is None:
            run_state = (run_graph.params(), [p for p, _ in run_graph.updates])
        self._run_params, self._run_updated = list(run_state[0]), list(run_state[1])
        self._fusion = fusion         # the rows of fusion(), when known (a cache hit's); else made on use
        # the parameters' state dicts (each Parameter keeps its own for life): read and
        # committed per call without an attribute lookup per parameter
        self._run_states = [p._state for p in self._run_params]
        self._updated_states = [p._state for p in self._run_updated]
        self._names = {ph.name: i for i, ph in enumerate(self.inputs) if ph.name}
        self._dtypes = [np_dtype(ph.dtype) for ph in self.inputs]
        self._stats = dict(stats or {})
        self._stages = dict(stages or {})
        # the locks of the updated parameters' groups (shared with every Function updating
        # one of them: runtime/update_locks.py), then this Function's own (its runner's
        # bindings are per Function)
        self._own_lock = threading.Lock()
        self._locks = lock_chunks(update_locks(self._run_updated) + [self._own_lock])
        self._checks = call_checks(graph)
        self._value_checks = [c for c in self._checks if reads_values(c)]
        self._signatures: dict = {}   # input keys of a checked device-array call -> bound sizes

    @property
    def _run_graph(self):
        """The graph the runner computes (the optimised graph of ng.compile)."""
        g = self._run_graph_or_make
        if callable(g):
            g = self._run_graph_or_make = g()
        return g

    @property
    def opt_graph(self):
        """The graph after the passes (what fn.dump("opt") prints)."""
        return self._run_graph

    # ------------------------------------------------------------------ calling
    def _remember_sizes(self, args, vals, env):
        """Keep `env` for these inputs' keys when every input passed as it was given (no
        copy, no cast: the device array itself reaches the runner)."""
        keys = self.runner.input_keys(args)
        if keys is None or not all(getattr(v, "tensor", None) is a for v, a in zip(vals, args)):
            return
        if len(self._signatures) >= 64:   # many shapes: start over rather than grow
            self._signatures.clear()
        self._signatures[keys] = env

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
            dev = None if isinstance(v, np.ndarray) else self.runner.device_array(v, label, str(ph.type))
            if dev is not None:   # a device array: checked as an array, never copied to the host
                v = dev
            elif not isinstance(v, np.ndarray):
                try:
                    a = np.asarray(v)
                except (TypeError, ValueError) as e:
                    raise InputError(f"input '{label}': expected {ph.type}, got {type(v).__name__} that is "
                                     f"not an array: {e}") from None
                if a.dtype == object or not np.can_cast(a.dtype, want, casting="same_kind"):
                    raise InputError(f"input '{label}': expected {ph.type}, got a {type(v).__name__} of "
                                     f"{a.dtype} values, shape {list(a.shape)}")
                _check_fits(label, ph, a, want)
                v = a.astype(want, copy=False)
            if v.dtype != want:
                castable = v.dtype != object and np.can_cast(v.dtype, want, casting="same_kind")
                if self.cast_inputs and castable:
                    warnings.warn(f"input '{label}': casting {v.dtype} to {want} (expected {ph.type}, "
                                  f"got {_given(v)})", stacklevel=3)
                    _check_fits(label, ph, v, want)
                    v = v.astype(want)
                else:
                    hint = (" (pass cast_inputs=True to ng.compile to allow this cast)" if castable else
                            " (cast it yourself if the conversion is intended)")
                    raise InputError(f"input '{label}': expected {ph.type}, got {_given(v)}: dtype {v.dtype} "
                                     f"is not {want}{hint}")
            if dev is None and not v.flags.c_contiguous:
                v = np.ascontiguousarray(v)
            out.append(v)
        return out

    def __call__(self, *args, **kwargs):
        env = None
        if self._signatures and not kwargs:
            keys = self.runner.input_keys(args)
            if keys is not None:
                env = self._signatures.get(keys)
        if env is None:
            vals, env = self._checked(args, kwargs)
        else:   # device arrays with the keys of an earlier call that passed every check
            vals = args
            for check in self._value_checks:   # what the keys do not vouch for: values (class ids)
                check(vals, env)
        params, outs, new = locked(self._locks, self._run_and_commit, vals, env)
        if not self.runner.fresh_results:
            # an output that is a parameter's array (old or new) is copied, so the caller
            # cannot change the parameter through it
            state = {id(a) for a in params} | {id(a) for a in new}
            outs = [np.array(o) if id(o) in state else o for o in outs]
        if len(self.graph.outputs) == 1 and self._single:
            return outs[0]
        return outs

    def _checked(self, args, kwargs) -> tuple:
        """(inputs, sizes) of a call after every check: types, shapes, sizes, values.
        Sizes bound for device arrays taken as they are, once every check passed, are
        kept for their keys (the next call with such keys checks values only)."""
        vals = self._check(self._collect(args, kwargs))
        env = bind_dims(self.inputs, vals, joins=getattr(self.graph, "size_joins", None))
        for check in self._checks:
            check(vals, env)
        if not kwargs:
            self._remember_sizes(args, vals, env)
        return vals, env

    def _run_and_commit(self, vals, env):
        # kept for profile(); device tensors are not kept: one may be an output buffer a
        # replayed launch sequence reuses only once nobody holds it (runtime/gpu_replay.py)
        self._last = (vals, env) if all(map(isinstance, vals, itertools.repeat(np.ndarray))) else None
        runner = self.runner
        if runner.keeps_device_values:   # updated parameters stay on the device (runtime/gpu_arrays.py)
            params = list(map(_value_of, self._run_states))
        else:
            params = [p.value for p in self._run_params]
        try:
            outs, new = runner.run(vals, params, env)
        except NumericsError as e:
            from .numerics import in_graph_terms
            host = [p.value for p in self._run_params]   # NumPy, also where params are DeviceValues
            better = in_graph_terms(self._run_graph, getattr(runner, "program", None), e, vals, host, env)
            if better is e:
                raise
            raise better from e
        # every update was computed from the old values; apply all at once
        if not runner.fresh_results:   # never keep the caller's array
            fed = {id(a) for a in vals}
            new = [np.array(v) if id(v) in fed else v for v in new]
        commit(self._updated_states, new)
        return params, outs, new

    # ------------------------------------------------------------------ device data
    def to_device(self, array):
        """`array` (NumPy or a device array) copied once to where this function computes:
        a device tensor on target="gpu" (pass it to every call: no copy per call), a
        C-contiguous NumPy array on the host targets."""
        return self.runner.to_device(array)

    def concatenate(self, arrays):
        """Outputs of calls of this function (batches) joined along their first axis
        where they are: NumPy arrays on the host, device tensors on the device (no copy
        to the host); model.predict joins its batches with it."""
        return self.runner.concatenate(list(arrays))

    def to_host(self, array) -> np.ndarray:
        """An output of this function as a NumPy array (a device tensor copied to the
        host; a NumPy array as it is): the inverse of to_device."""
        return self.runner.to_host(array)

    def to_device_if_fits(self, arrays) -> list:
        """`arrays` moved with to_device when all of them fit in the device's free memory
        together (with room to spare for the computation), else returned as they are."""
        nbytes = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
        if not self.runner.fits_on_device(nbytes):
            return list(arrays)
        return [self.to_device(a) for a in arrays]

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
        program = getattr(self.runner, "program", None)
        if program is not None and "all_reduce" in program.stats:
            out["all_reduce"] = program.stats["all_reduce"]   # the packed buffers (passes/collective.py)
        if program is not None and "loops" in program.stats:
            out["loops"] = program.stats["loops"]             # each scan's loop (passes/loop.py)
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
                from nngraph.textir import nested_value_names
                from passes.kernel_map import unfused
                g = self._run_graph
                roots = {id(o) for o in g.outputs} | {id(v) for _, v in g.updates}
                self._fusion = unfused(program.nodes, roots, nested_value_names(g))
        return FusionRows(dict(r) for r in self._fusion)

    def profile(self, *args, calls: int = 100, **kwargs):
        """Run the function `calls` times and return a table (a str, with `.rows` as
        dicts and `.info`) of its kernels and library calls: share of the time, time
        per call, FLOP/s and GB/s, the graph nodes each computes with their file:line.
        Takes inputs as a call does; with none, the inputs of the last call (the
        function keeps a reference to them for this, unless they were device tensors).
        The parameters are read, never updated."""
        from .profiling import profile
        if args or kwargs:
            vals = self._check(self._collect(args, kwargs))
            env = bind_dims(self.inputs, vals, joins=getattr(self.graph, "size_joins", None))
        elif self._last is not None:
            vals, env = self._last
        elif not self.inputs:
            vals, env = [], {}
        else:
            raise InputError(f"profile: give the inputs ({self._signature()}); the last call's are not kept "
                             "when there was none or they were device tensors")
        with self._own_lock:   # this Function's own lock: its bindings
            table = profile(self, vals, env, calls)
        self.last_profile = table
        return table

    last_profile = None
