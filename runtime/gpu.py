"""target="gpu": the Program printed as Triton kernels (codegen/triton), run on torch tensors.

build(graph, options) lowers the optimised graph to a Program, prints and imports
its Triton module and returns the GpuRunner. Without a CUDA device it needs
TRITON_INTERPRET=1 (then every kernel runs on Triton's interpreter, on CPU tensors:
that is how the tests run); otherwise it raises a RuntimeError saying so. The check
is made here, not at import, so `runtime.targets.available("gpu")` only fails when
triton or torch is missing.

The runner keeps on the device, between calls: the constants (uploaded once), each
parameter's value, and per set of dynamic sizes the temporaries (one tensor per
memory-plan slot). Inputs may be NumPy arrays (uploaded per call) or device arrays
(runtime/gpu_arrays.py: torch tensors on the runner's device or DLPack arrays, used
where they are, no copy); outputs come back as device tensors when an input was one
(or with `fn.runner.device_outputs = True`), else as NumPy arrays. Updates are
written to fresh device tensors, so a call that raises leaves the parameters
untouched; each comes back as a DeviceValue that the Function commits: the parameter
then holds the device tensor, read in place by the next call, and copied to the host
only when `p.value` is read. A parameter whose value the user set (a NumPy array) is
uploaded once per value.

On a CUDA device, a program is captured per set of sizes as CUDA graphs and replayed
from its second call on (runtime/gpu_replay.py: inputs read in place when the caller
passes the same tensors again, outputs handed out without a copy); fn.stats()
says whether the last call was replayed ("replayed") and why replay is off where it
is ("replay"). Kernels index in int32, or int64 where a launch touches 2**30
elements or more (codegen/triton/index_width.py). A reduction split across programs
(codegen/triton/loop_kernel.py) gets its partial-results scratch from its generated
launcher, per launch, on the device of the kernel's buffers (torch's caching
allocator makes that cheap on a GPU), so it is no buffer of the Program or its plan.
"""
from __future__ import annotations

import itertools
import os
import threading
import time

import numpy as np

from nngraph.errors import NumericsError
from nngraph.types import concrete_shape, is_float, np_dtype
from passes.memory import peak_bytes, region_of, slot_sizes
from passes.program import format_program, pointer_buffer, symbols

from .bindings import BindingCache
from .function import Runner
from .sizes import element_count

try:  # both are optional dependencies: a missing one makes the target unavailable
    import torch
    import triton  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"target 'gpu' needs torch and triton: {e}") from e

from .gpu_arrays import (TORCH_DTYPES, DeviceArray, DeviceValue, as_tensor, copied_once, device_tensor, pinned_device,
                         same_device, to_host, upload, view_tensor)
from .gpu_replay import StaticParams, replay_off_reason, replay_or_direct

_Tensor = torch.Tensor


def device_or_error() -> str:
    """'cuda' with a GPU, 'cpu' under TRITON_INTERPRET=1, else a RuntimeError with the reason."""
    interp = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    if interp:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    raise RuntimeError("target='gpu' needs a CUDA device, and torch.cuda.is_available() is False "
                       f"(torch {torch.__version__}); set TRITON_INTERPRET=1 in the environment before "
                       "starting Python to run the Triton kernels on the CPU through Triton's interpreter "
                       "(slow; meant for tests), or use target='cpu'")


class _Binding:
    """Per set of dynamic sizes: shapes, the temporaries (one tensor per plan slot), and
    the captured launch sequence once there is one (runtime/gpu_replay.py)."""

    def __init__(self, runner, env):
        p = runner.program
        self.shapes = {b.id: concrete_shape(b.shape, env) for b in p.buffers.values()}
        nbytes = slot_sizes(p, env)
        self.peak_bytes = peak_bytes(p, env)
        arenas = {s: torch.empty(max(n, 1), dtype=torch.uint8, device=runner.device) for s, n in nbytes.items()}
        self.temps = {}
        for b in p.buffers.values():
            if b.kind == "temp":
                shape = self.shapes[b.id]
                n = element_count(shape) * np_dtype(b.dtype).itemsize
                arena = arenas[region_of(p, b.id)]
                self.temps[runner.names[b.id]] = arena[:n].view(TORCH_DTYPES[b.dtype]).view(shape)
        self.sizes = {s: int(env[s]) for s in runner.symbols}
        self.fresh = [(runner.names[b], self.shapes[b], TORCH_DTYPES[p.buffers[b].dtype]) for b in runner.fresh_ids]
        self.base = {**runner.consts, **self.temps}   # the buffers every call of these sizes shares
        # views of those are made once here; views of inputs, parameters and fresh
        # buffers per call (runner.views lists each view after the one it views)
        self.call_views = []
        for name, of, bid, offset in runner.views:
            if of in self.base:
                self.base[name] = view_tensor(self.base[of], self.shapes[bid], offset)
            else:
                self.call_views.append((name, of, bid, offset))
        self.calls = 0
        self.replay = None          # a Replay once captured; False where capturing failed


class GpuRunner(Runner):
    keeps_device_values = True    # parameters may hold DeviceValues between calls
    fresh_results = True          # outputs: new tensors, aliases of graph buffers or host copies; updates: new DeviceValues

    def __init__(self, program, module, names, device, check_numerics=False, compile_seconds=0.0):
        self.program, self.module, self.names, self.device = program, module, names, device
        self.torch_device = pinned_device(device)
        self.check_numerics = check_numerics
        self.symbols = symbols(program)
        self.device_outputs = False
        self.consts = {names[b.id]: torch.from_numpy(np.array(  # a writable copy: constants are read-only arrays
            b.value, dtype=np_dtype(b.dtype), order="C").reshape(tuple(int(s) for s in b.shape))).to(device)
            for b in program.buffers.values() if b.kind == "const"}
        self.input_names = [names[b] for b in program.inputs]
        self.param_names = [names[b] for b in program.params]
        self.fresh_ids = sorted({b.id for b in program.buffers.values() if b.kind in ("output", "update")})
        update_ids = {u for _, u in program.updates}
        # an output handed out as a device tensor as it is: written fresh each call, no update's
        self._own_output = [program.buffers[x].kind == "output" and x not in update_ids for x in program.outputs]
        self.views = _views_in_order(program, names)
        self._dev_params: list = [None] * len(program.params)
        self._host_params: list = [None] * len(program.params)
        # an update written to a fresh tensor becomes its parameter's device value
        self._param_of_update = {u: program.params.index(pb) for pb, u in program.updates
                                 if pb in program.params and u in self.fresh_ids}
        self._bindings = BindingCache(lambda env: _Binding(self, env))
        self._last_env = self._last_binding = None
        self._lock = threading.Lock()
        self.replay_off = replay_off_reason(device, check_numerics, program)
        self.static = StaticParams(program, self.torch_device)
        self.stats = {"kernels": program.kernel_count(),
                      "library_calls": 0, "peak_bytes": 0, "cache_hit": False,
                      "codegen_seconds": compile_seconds, "device": device,
                      "replay": "on" if self.replay_off is None else f"off: {self.replay_off}",
                      "replayed": False, "captures": 0}

    def replay_off_for_checked_updates(self, why: str) -> None:
        """No capture for a step whose results a wrapper may still reject after its
        kernels ran (runtime/index_check.py): a captured graph writes the updates into
        the parameters' storage in place, which a rejected call could not undo."""
        if self.replay_off is None and self.program.updates:
            self.replay_off = why
            self.stats["replay"] = f"off: {why}"

    # ------------------------------------------------------------------ state
    def _binding(self, env) -> _Binding:
        """The binding for these sizes. A Function passes the same `env` object again for
        inputs of a signature it has seen (Function._signatures): then the binding of the
        last call is taken without making its key."""
        if env is self._last_env:
            return self._last_binding
        bd = self._bindings.get(tuple([env[s] for s in self.symbols]), env)
        self._last_env, self._last_binding = env, bd
        return bd

    def _param(self, i, a):
        """The device tensor of parameter i: a DeviceValue's own tensor when it is on this
        device, else the host value uploaded (once per value the parameter holds)."""
        if self._host_params[i] is not a:
            if isinstance(a, DeviceValue) and same_device(a.tensor, self.torch_device):
                self._dev_params[i] = a.tensor
            elif isinstance(a, DeviceValue):
                self._dev_params[i] = upload(a.to_numpy(), self.torch_device)
            else:
                self._dev_params[i] = upload(a, self.torch_device)
                copied_once(a)
            self._host_params[i] = a
        return self._dev_params[i]

    # ------------------------------------------------------------------ device data
    def input_keys(self, args):
        """(shape, dtype, device) of each input when every one is a C-contiguous torch
        tensor (of exactly that type), else None."""
        keys = []
        for t in args:
            if type(t) is not _Tensor or not t.is_contiguous():
                return None
            keys.append((t.shape, t.dtype, t.device))
        return tuple(keys)

    def device_array(self, value, label, expected):
        return DeviceArray.of(value, self.torch_device, label, expected)

    def to_device(self, array):
        t = as_tensor(array)
        if t is None:   # a private copy even where the device is the CPU (the interpreter)
            t = torch.from_numpy(np.array(array, order="C", copy=True))
        return t.to(self.torch_device).contiguous()

    def concatenate(self, arrays):
        """Device tensors joined on the device (NumPy arrays, outputs of NumPy calls, on the host)."""
        if all(isinstance(a, np.ndarray) for a in arrays):
            return np.concatenate(arrays)
        return torch.cat([self.to_device(a) if isinstance(a, np.ndarray) else a for a in arrays])

    def to_host(self, array) -> np.ndarray:
        return array if isinstance(array, np.ndarray) else to_host(as_tensor(array))

    def fits_on_device(self, nbytes: int) -> bool:
        """Half the free device memory at most: the rest is for the computation."""
        if self.torch_device.type != "cuda":
            return True
        free, _ = torch.cuda.mem_get_info(self.torch_device)
        return nbytes <= free // 2

    # ------------------------------------------------------------------ calling
    def bind(self, inputs, params, env) -> tuple:
        """(buffers, binding) for one call: every buffer name -> its device tensor. The
        generated module's run(buffers, binding.sizes) then runs the schedule (benchmarks
        time that alone)."""
        bd = self._binding(env)
        self.stats["peak_bytes"] = bd.peak_bytes
        b = dict(bd.base)
        for name, a in zip(self.input_names, inputs):
            t = device_tensor(a)
            b[name] = t if t is not None else upload(a, self.torch_device)
        for i, (name, a) in enumerate(zip(self.param_names, params)):
            b[name] = self._param(i, a)
        for name, shape, dt in bd.fresh:
            b[name] = torch.empty(shape, dtype=dt, device=self.torch_device)
        for name, of, bid, offset in bd.call_views:     # same memory, another row-major shape
            b[name] = view_tensor(b[of], bd.shapes[bid], offset)
        return b, bd

    def run(self, inputs, params, env):
        """Outputs are device tensors when an input was one (or with device_outputs), else
        NumPy arrays; updates come back as DeviceValues (host copies made on demand)."""
        with self._lock:
            device_out = self.device_outputs or not all(map(isinstance, inputs, itertools.repeat(np.ndarray)))
            bd = self._binding(env)
            stats = self.stats
            stats["peak_bytes"] = bd.peak_bytes
            result = None if self.replay_off is not None else replay_or_direct(self, bd, inputs, params, device_out)
            stats["replayed"] = result is not None
            return result if result is not None else self._run_direct(inputs, params, env, device_out)

    def _run_direct(self, inputs, params, env, device_out):
        b, bd = self.bind(inputs, params, env)
        if self.check_numerics:
            self._run_checked(b, bd)
        elif self.device == "cpu":   # Triton's interpreter computes with NumPy: inf/NaN are values here
            with np.errstate(all="ignore"):
                self.module.run(b, bd.sizes)
        else:
            self.module.run(b, bd.sizes)
        outs = [self._hand_out(b[self.names[x]], device_out, own)
                for x, own in zip(self.program.outputs, self._own_output)]
        new = []
        for pb, ub in self.program.updates:
            t = b[self.names[ub]]
            new.append(DeviceValue(t))
            i = self._param_of_update.get(ub)
            if i is not None:   # the device tensor is the parameter's next value
                self._dev_params[i], self._host_params[i] = t, new[-1]
        return outs, new

    def _hand_out(self, t, device: bool, own: bool = False):
        if device:
            return t if own else t.clone()
        return to_host(t)

    def _run_checked(self, b, bd):
        """Launch kernel by kernel; after each, every float buffer it wrote must be finite."""
        p = self.program
        for kno, kern in enumerate(p.schedule):
            launch, syms = self.module.SCHEDULE[kno]
            with np.errstate(all="ignore"):
                launch(b, *[bd.sizes[s] for s in syms])
            for bid in sorted(kern.writes()):
                buf = p.buffers[bid]
                if not is_float(buf.dtype) or buf.kind == "step":   # checked as its stacked buffer
                    continue
                t = b[self.names[bid]]
                if not bool(torch.isfinite(t).all()):
                    kind = "NaN" if bool(torch.isnan(t).any()) else "inf"
                    where = buf.source or kern.source or "?"
                    err = NumericsError(f"{kern.name} made a non-finite value ({kind}) in {buf.name}: "
                                        f"{buf.type_str()} built at {where} (kernel {kno} computes: "
                                        f"{kern.source or kern.name}); no update was applied")
                    err.kernel = kno
                    raise err


def _views_in_order(program, names) -> list:
    """(name, name of the viewed buffer, buffer id, offset) for every view, each after the
    one it views; views of a step buffer are made per step by their loop
    (codegen/triton/loop.py)."""
    views = {b.id: b for b in program.buffers.values() if b.kind == "view"
             and program.buffers[pointer_buffer(program.buffers, b.id)].kind != "step"}
    out, done = [], set()
    while len(done) < len(views):
        ready = [v for v in views.values() if v.id not in done and (v.view_of not in views or v.view_of in done)]
        if not ready:
            raise RuntimeError("target='gpu': the Program's views form a cycle")
        for v in ready:
            out.append((names[v.id], names[v.view_of], v.id, v.offset))
            done.add(v.id)
    return out


def build(graph, options):
    """Lower, print, import; returns (runner, extra dump stages)."""
    device = device_or_error()
    from passes.lowering import to_program

    from .conv_choice import conv_choice_for
    program = to_program(graph, options.get("opt_level", 2), conv_choice_for("gpu"))
    return build_program(program, check_numerics=options.get("check_numerics", False),
                         name=getattr(graph, "name", "main"), device=device)


def _quiet_interpreter():
    """Under Triton's interpreter, skip its per-operation int32 overflow probe: it only
    reports with debug=True, yet doubles the cost of index arithmetic (our launchers
    already refuse buffers whose int32 indices could overflow)."""
    try:
        import dataclasses

        from triton.runtime import interpreter
        b = interpreter.interpreter_builder
        if getattr(b.options, "sanitize_overflow", False) and not b.options.debug:
            b.options = dataclasses.replace(b.options, sanitize_overflow=False)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another triton version
        pass


def build_program(program, check_numerics=False, name="main", device=None):
    from codegen.triton import generate, load
    device = device or device_or_error()
    if device == "cpu":
        _quiet_interpreter()
    t0 = time.perf_counter()
    source, names = generate(program, name)
    module = load(source)
    runner = GpuRunner(program, module, names, device, check_numerics, time.perf_counter() - t0)
    return runner, {"kernels": format_program(program), "triton": source}
