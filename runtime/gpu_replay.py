"""Launch replay for target="gpu": a call's launch sequence captured once per set of
dynamic sizes as a CUDA graph (torch.cuda.CUDAGraph) and replayed, so a step costs one
graph launch (a few microseconds on the host) instead of one Python-side Triton launch
per kernel (tens of microseconds each).

A CUDA graph reads and writes fixed addresses. A binding's Replay therefore holds up to
MAX_VARIANTS captured graphs ("variants") over the binding's temporaries and one
storage tensor per parameter, shared by all of a runner's graphs (StaticParams); each
variant has its own output buffers and reads its inputs either

- in place: the device tensors of the call that captured it (kept referenced, so their
  memory cannot go to another tensor). A later call whose device inputs have the same
  addresses (the caller reuses its tensors, the common case for a data set or a batch
  buffer on the device) replays it with no copy at all. Made when a call's inputs sit
  at the addresses of the call before it and none is an output of these graphs; or
- from static buffers, into which each call's arrays are copied (on the device).

The graph ends with a copy of every update into its parameter's storage; after a replay
each updated parameter holds a DeviceValue of that storage, so the next replay reads it
in place and nothing goes back to the host. Device outputs are handed out as aliases of
the variant's output buffers, without a copy: a variant is replayed only while no
tensor the caller holds shares its outputs' memory (the storage's use count, read in
one call per output), so an output the caller keeps is never overwritten; when every
variant's outputs are still held, a last variant hands out clones. NumPy outputs are
copied to the host.

When replay is used (replay_off_reason says why not): on a CUDA device, without
check_numerics (which checks between kernels), unless NNGRAPH_GPU_REPLAY=0. Single
launches are replayed too: a graph launch costs the host less than a Triton launch. A
binding is captured at its second call: the first ran directly and compiled every
kernel for its sizes. A failed capture leaves that binding on direct launches, with the
reason in fn.stats()["replay"]. Under TRITON_INTERPRET=1 there is no CUDA: every call
launches directly.
"""
from __future__ import annotations

import itertools
import operator
import os

import torch

from .gpu_arrays import TORCH_DTYPES, DeviceValue, copied_once, device_tensor, host_tensor, to_host, view_tensor

MAX_CAPTURES = 32   # sets of sizes captured per function; further ones launch directly


def replay_off_reason(device: str, check_numerics: bool, program) -> str | None:
    """None when calls of this program are captured and replayed, else why not."""
    mode = os.environ.get("NNGRAPH_GPU_REPLAY", "auto")
    if device == "cpu":
        return "Triton's interpreter runs the kernels on the CPU (no CUDA graphs)"
    if mode == "0":
        return "NNGRAPH_GPU_REPLAY=0"
    if check_numerics:
        return "check_numerics=True checks every kernel's results as it runs"
    if any(getattr(k, "ranks", 1) > 1 for k in program.schedule):   # passes/collective.py's AllReduceKernel
        return "the step calls MPI from the host (all_reduce in a job of several processes)"
    return None


class StaticParams:
    """One storage tensor per parameter the program reads, allocated on first use, that
    every captured graph of a runner reads; `fill` brings it up to a call's value.

    Each storage tensor has one DeviceValue for the runner's life (`values`), sharing
    `clock`, which `replayed` advances: a replay hands these same objects back as the
    updated parameters' values (no object made per parameter per call), and a host
    copy of one (`p.value`) is made again after each replay (gpu_arrays.DeviceValue)."""

    def __init__(self, program, device):
        self.shapes = [(tuple(int(s) for s in program.buffers[b].shape), TORCH_DTYPES[program.buffers[b].dtype])
                       for b in program.params]
        self.device = device
        self.tensors = None
        self.values = None
        self.clock = [0]
        self._source = [None] * len(program.params)   # the state value each tensor holds a copy of
        self._seen = [0] * len(program.params)        # ... at that value's version
        # the objects the parameters held after the last fill (a replay's rewritten ones:
        # their storage's own value), and whether one was another runner's DeviceValue,
        # whose version must then be checked on every call
        self._expected = [None] * len(program.params)
        self._foreign = False

    def storage(self) -> list:
        if self.tensors is None:
            self.tensors = [torch.empty(shape, dtype=dt, device=self.device) for shape, dt in self.shapes]
            self.values = [DeviceValue(t, self.clock) for t in self.tensors]
        return self.tensors

    def fill(self, params):
        """Copy into the storage every parameter value it does not hold yet. When every
        parameter holds what it held after the last fill (a read-only one its NumPy
        value, an updated one its storage's own DeviceValue after a replay): one identity
        test per parameter, in C. A value of another runner's storage is copied again
        whenever that runner replayed since (its version), so it is checked every call."""
        if not self._foreign and all(map(operator.is_, params, self._expected)):
            return
        foreign = False
        for i, a in enumerate(params):
            t = self.tensors[i]
            device_value = isinstance(a, DeviceValue)
            if a is self.values[i] or (device_value and a.tensor is t):
                continue
            foreign = foreign or device_value
            version = a.version if device_value else 0
            if self._source[i] is a and self._seen[i] == version:
                continue
            t.copy_(a.tensor if device_value else host_tensor(a))
            if not device_value:
                copied_once(a)
            self._source[i], self._seen[i] = a, version
        self._expected, self._foreign = list(params), foreign

    def replayed(self, rewritten) -> None:
        """A graph rewrote the storage of the parameters at positions `rewritten`: host
        copies of its values are stale, and so is what `fill` last copied there (should
        the call not be committed, the parameter's value is copied in again next time)."""
        self.clock[0] += 1
        source, expected = self._source, self._expected
        for i in rewritten:
            source[i] = None
            expected[i] = self.values[i]     # what the parameter holds once the call commits


def capture_cuda_graph(warmup, launches):
    """`launches` captured as a CUDA graph, after `warmup` ran once on a side stream (as
    PyTorch asks: lazy initialisation and compilation happen outside the capture);
    returns the function that replays the graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        warmup()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        launches()
    return graph.replay


class CaptureError(RuntimeError):
    """Capturing a binding's launches failed; the binding then launches directly."""


MAX_VARIANTS = 3    # graphs per set of sizes whose outputs are handed out without a copy
_use_count = getattr(torch._C, "_storage_Use_Count", None)   # None: every output is cloned


_data_ptr = operator.methodcaller("data_ptr")


def _storage_users(t) -> int:
    return _use_count(t.untyped_storage()._cdata)


class _Variant:
    """One captured graph of a Replay: its input tensors (the caller's, read in place, or
    static copies), its output buffers, and the use count of each output's storage when
    no caller holds it."""

    def __init__(self, replay, inputs, clones: bool):
        runner, bd = replay.runner, replay.bd
        p, names, dev = runner.program, runner.names, runner.torch_device
        self.in_place = inputs is not None
        self.inputs = inputs if self.in_place else [
            torch.empty(bd.shapes[x], dtype=TORCH_DTYPES[p.buffers[x].dtype], device=dev) for x in p.inputs]
        self.ptrs = tuple(t.data_ptr() for t in self.inputs)
        b = dict(bd.base)
        b.update(zip(runner.input_names, self.inputs))
        b.update(zip(runner.param_names, replay.params))
        for name, shape, dt in bd.fresh:
            b[name] = torch.empty(shape, dtype=dt, device=dev)
        for name, of, bid, offset in bd.call_views:
            b[name] = view_tensor(b[of], bd.shapes[bid], offset)
        self.buffers = b
        self.outputs = [b[names[x]] for x in p.outputs]
        # outputs handed out as they are: fresh buffers of this variant (never a constant,
        # a parameter's storage or an input), when storage use counts can be read
        self.raw = [not clones and _use_count is not None and p.buffers[x].kind in ("output", "update")
                    for x in p.outputs]
        self.all_raw = all(self.raw)
        self.updates = [(runner._param_of_update.get(u), b[names[u]]) for _, u in p.updates]
        # the updated parameters' values after a replay: the storage's own DeviceValues,
        # made once (None: an update of no parameter the program reads, cloned per call)
        values = replay.static.values
        self.new = tuple(values[i] if i is not None else None for i, _ in self.updates)
        self.new_is_static = None not in self.new
        self.rewritten = tuple(i for i, _ in self.updates if i is not None)
        self.watch = [(o.untyped_storage(), 0) for o, r in zip(self.outputs, self.raw) if r]
        self.watch = [(s, _use_count(s._cdata)) for s, _ in self.watch]
        self.graph = None

    def free(self) -> bool:
        """No tensor handed out by an earlier replay shares an output's memory."""
        for s, idle in self.watch:
            if _use_count(s._cdata) != idle:
                return False
        return True

    def capture(self, replay):
        def schedule():
            replay.runner.module.run(self.buffers, replay.bd.sizes)

        def launches():
            schedule()
            for i, t in self.updates:
                if i is not None:
                    replay.params[i].copy_(t)
        try:
            self.graph = capture_cuda_graph(schedule, launches)
        except Exception as e:  # noqa: BLE001 - any failure: this binding launches directly
            raise CaptureError(f"{type(e).__name__}: {e}") from e


class Replay:
    """A binding's captured variants (see the module's docstring). A variant is captured
    at its first use: the call's values are copied in, the schedule runs once on a side
    stream (so every kernel variant these buffers need is compiled, and no kernel ever
    reads uninitialised indices), then the launches are captured."""

    def __init__(self, runner, bd):
        self.runner, self.bd = runner, bd
        self.params = runner.static.storage()
        self.static = runner.static
        self.variants: list = []
        self.cloning = None          # the variant used when every other one is held
        self.last_ptrs = None        # the device inputs' addresses at the previous call

    def _pick(self, tensors):
        """The variant for a call with these input tensors (None for a host array)."""
        # (`None in tensors` would compare tensors with ==: a torch operation each)
        ptrs = None if any(map(operator.is_, tensors, itertools.repeat(None))) else tuple(map(_data_ptr, tensors))
        for v in self.variants:
            if v.in_place and v.ptrs == ptrs and v.free():
                return v
        copy_free = next((v for v in self.variants if not v.in_place and v.free()), None)
        reuse = ptrs is not None and ptrs == self.last_ptrs and not self._own_outputs(ptrs)
        self.last_ptrs = ptrs
        if len(self.variants) < MAX_VARIANTS and (reuse or copy_free is None):
            v = _Variant(self, list(tensors) if reuse else None, clones=False)
            self.variants.append(v)
            return v
        if copy_free is not None:
            return copy_free
        if self.cloning is None:
            self.cloning = _Variant(self, None, clones=True)
        return self.cloning

    def _own_outputs(self, ptrs) -> bool:
        """Whether an input is an output of these graphs passed back (h = f(h)): a graph
        reading it in place would keep that output's buffer referenced, hence never free."""
        mine = {o.data_ptr() for v in self.variants for o in v.outputs}
        return any(p in mine for p in ptrs)

    def call(self, inputs, params, device_out: bool):
        """(outputs, new values) of one replay with these inputs and parameter values;
        CaptureError (before any parameter changed) when a variant cannot be captured."""
        tensors = [a if type(a) is torch.Tensor else device_tensor(a) for a in inputs]
        v = self._pick(tensors)
        if not v.in_place:
            for static, a, t in zip(v.inputs, inputs, tensors):
                static.copy_(t if t is not None else host_tensor(a))
        static = self.static
        static.fill(params)
        if v.graph is None:
            v.capture(self)
        v.graph()
        static.replayed(v.rewritten)
        if not device_out:
            outs = [to_host(o) for o in v.outputs]
        elif v.all_raw:
            outs = list(map(_detach, v.outputs))
        else:
            outs = [o.detach() if r else o.clone() for o, r in zip(v.outputs, v.raw)]
        if v.new_is_static:
            return outs, v.new
        return outs, [n if n is not None else DeviceValue(t.clone()) for n, (_, t) in zip(v.new, v.updates)]


_detach = torch.Tensor.detach


def replay_or_direct(runner, bd, inputs, params, device_out):
    """The call through the binding's Replay (made and captured at the binding's second
    call), or None when this call must launch directly: replay off, the function has
    captured MAX_CAPTURES sets of sizes, or capturing failed (the reason then goes to
    the runner's stats, and the binding launches directly from then on)."""
    replay = bd.replay
    if not replay:
        bd.calls += 1
        if replay is False or bd.calls < 2:
            return None
        if runner.stats["captures"] >= MAX_CAPTURES:
            bd.replay = False
            return None
        replay = bd.replay = Replay(runner, bd)
    fresh = not replay.variants
    try:
        result = replay.call(inputs, params, device_out)
    except CaptureError as e:
        bd.replay = False
        runner.stats["replay"] = f"on, but capturing sizes {bd.sizes} failed ({e}): they launch directly"
        return None
    if fresh:
        runner.stats["captures"] += 1
    return result
