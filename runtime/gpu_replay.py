"""Launch replay for target="gpu": a call's launch sequence captured once per set of
dynamic sizes as a CUDA graph (torch.cuda.CUDAGraph) and replayed, so a small model's
step costs one graph launch instead of one Python-side Triton launch per kernel.

A CUDA graph reads and writes fixed addresses, so a replayed binding has static
buffers: one per input (a call's arrays are copied into them, on the device), one per
output and update, the temporaries of its binding, and one storage tensor per
parameter, shared by all of a runner's graphs (StaticParams). The graph ends with a
copy of every update into its parameter's storage; after a replay each updated
parameter holds a DeviceValue of that storage, so the next replay reads it in place
and nothing goes back to the host. Outputs are copied out of their static buffers
(cloned on the device, or to NumPy), because the next replay overwrites them.

When replay is used (replay_off_reason says why not): on a CUDA device, without
check_numerics (which checks between kernels), for programs of two launches or more
(one launch saves nothing and would pay the copies), unless NNGRAPH_GPU_REPLAY says
otherwise ("0": never, "1": also single launches). A binding is captured at its second
call: the first ran directly and compiled every kernel for its sizes. A failed capture
leaves that binding on direct launches, with the reason in fn.stats()["replay"].
Under TRITON_INTERPRET=1 there is no CUDA: every call launches directly.
"""
from __future__ import annotations

import os

import torch

from .gpu_arrays import TORCH_DTYPES, DeviceArray, DeviceValue, host_tensor, to_host

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
    if mode != "1" and program.kernel_count() < 2:
        return "a single launch per call (NNGRAPH_GPU_REPLAY=1 replays it anyway)"
    return None


class StaticParams:
    """One storage tensor per parameter the program reads, allocated on first use, that
    every captured graph of a runner reads; `fill` brings it up to a call's value."""

    def __init__(self, program, device):
        self.shapes = [(tuple(int(s) for s in program.buffers[b].shape), TORCH_DTYPES[program.buffers[b].dtype])
                       for b in program.params]
        self.device = device
        self.tensors = None
        self._source = [None] * len(program.params)   # the state value each tensor holds

    def storage(self) -> list:
        if self.tensors is None:
            self.tensors = [torch.empty(shape, dtype=dt, device=self.device) for shape, dt in self.shapes]
        return self.tensors

    def fill(self, params):
        """Copy into the storage every parameter value it does not hold yet."""
        for i, a in enumerate(params):
            t = self.tensors[i]
            if self._source[i] is a or (isinstance(a, DeviceValue) and a.tensor is t):
                continue
            if isinstance(a, DeviceValue):
                t.copy_(a.tensor)
            else:
                t.copy_(host_tensor(a))
            self._source[i] = a


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


class Replay:
    """A binding's launch sequence as a CUDA graph, with its static buffers. The graph is
    captured at the first call: the call's values are copied in, the schedule runs once
    on a side stream (so every kernel variant these buffers need is compiled, and no
    kernel ever reads uninitialised indices), then the launches are captured."""

    def __init__(self, runner, bd):
        p, names, dev = runner.program, runner.names, runner.torch_device
        self.run_schedule = lambda: runner.module.run(self.buffers, bd.sizes)
        self.params = runner.static.storage()
        self.inputs = [torch.empty(bd.shapes[x], dtype=TORCH_DTYPES[p.buffers[x].dtype], device=dev)
                       for x in p.inputs]
        b = dict(runner.consts)
        b.update(bd.temps)
        b.update(zip(runner.input_names, self.inputs))
        b.update(zip(runner.param_names, self.params))
        for name, shape, dt in bd.fresh:
            b[name] = torch.empty(shape, dtype=dt, device=dev)
        for name, of, bid in runner.views:
            b[name] = b[of].view(bd.shapes[bid])
        self.buffers = b
        self.outputs = [b[names[x]] for x in p.outputs]
        # per update: (its parameter's storage index or None, its static tensor)
        self.updates = [(runner._param_of_update.get(u), b[names[u]]) for _, u in p.updates]
        self.static = runner.static
        self.graph = None

    def _capture(self):
        def launches():
            self.run_schedule()
            for i, t in self.updates:
                if i is not None:
                    self.params[i].copy_(t)
        try:
            return capture_cuda_graph(self.run_schedule, launches)
        except Exception as e:  # noqa: BLE001 - any failure: this binding launches directly
            raise CaptureError(f"{type(e).__name__}: {e}") from e

    def call(self, inputs, params, device_out: bool):
        """(outputs, new values) of one replay with these inputs and parameter values;
        CaptureError (before any parameter changed) when the first call cannot capture."""
        for static, a in zip(self.inputs, inputs):
            src = a.tensor if isinstance(a, DeviceArray) else host_tensor(a)
            if src.data_ptr() != static.data_ptr():
                static.copy_(src)
        self.static.fill(params)
        if self.graph is None:
            self.graph = self._capture()
        self.graph()
        outs = [o.clone() if device_out else to_host(o) for o in self.outputs]
        new = [DeviceValue(self.params[i] if i is not None else t.clone()) for i, t in self.updates]
        return outs, new


def replay_or_direct(runner, bd, inputs, params, device_out):
    """The call through the binding's Replay (made and captured at the binding's second
    call), or None when this call must launch directly: replay off, the function has
    captured MAX_CAPTURES sets of sizes, or capturing failed (the reason then goes to
    the runner's stats, and the binding launches directly from then on)."""
    bd.calls += 1
    if bd.replay is None and bd.calls >= 2:
        bd.replay = Replay(runner, bd) if runner.stats["captures"] < MAX_CAPTURES else False
    if not bd.replay:
        return None
    fresh = bd.replay.graph is None
    try:
        result = bd.replay.call(inputs, params, device_out)
    except CaptureError as e:
        bd.replay = False
        runner.stats["replay"] = f"on, but capturing sizes {bd.sizes} failed ({e}): they launch directly"
        return None
    runner.stats["captures"] += fresh
    return result
