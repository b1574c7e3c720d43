"""Run a Program with NumPy, kernel by kernel: the proof that fusion and memory
planning preserve meaning before any machine code exists.

Each stage's body is evaluated once over its whole index grid (outer + inner
domain) by broadcasting: `idx k` is an arange shaped to broadcast along axis k,
so values are only as large as the axes they depend on. Reduce stages reduce the
inner axes of the grid. Temps live in arena slots exactly as `Program.plan` says
(buffers of one slot are views of the same bytes, filled with 0xFF poison), so a
planning or scheduling bug shows up as a wrong result, not as a silent copy.
"""
from __future__ import annotations

import time

import numpy as np

from nngraph.errors import NumericsError, VerifyError
from nngraph.distributed import start_allreduce_sum
from nngraph.ops.elementwise import BINARY_REFS, UNARY_REFS
from nngraph.ops.random import uniform_floats
from nngraph.semantics import reduce_identity
from nngraph.types import concrete_shape, is_float, np_dtype

from .collective import AllReduceKernel
from .memory import region_of, slot_sizes
from .loop import ScanLoop, copies_after_step, copies_before_loop
from .direct_window import window_columns
from .program import LoopKernel, MatmulKernel, Program, pointer_buffer

_EXTRA = {
    "floordiv": np.floor_divide,
    "stop_gradient": lambda a: a,
}


_SAFE_DIVISOR_OPS = ("fmod", "trunc_div")


def _require_safe_divisor(ins, divisor):
    """Integer fmod/trunc_div are srem/sdiv in machine code, which trap (SIGFPE) on a divisor
    of 0 or -1; the lowering promises a divisor kept off both (semantics.safe_int_divisor),
    so one here is a lowering bug, caught before cpu would crash on it."""
    if ins.op not in _SAFE_DIVISOR_OPS or is_float(ins.dtype):
        return
    bad = (divisor == 0) | (divisor == -1)
    if np.any(bad):
        raise VerifyError(f"program interpreter: integer {ins.op} ({ins.dtype}) by a divisor of "
                          f"{int(np.asarray(divisor)[bad].flat[0])}; the lowering must keep integer "
                          f"divisors off 0 and -1 (nngraph/semantics.safe_int_divisor)")


def _eval_body(body, grid, p, results, arrays, env, acc=None):
    nd = len(grid)
    vals = []
    with np.errstate(all="ignore"):
        for ins in body:
            op, dt = ins.op, np_dtype(ins.dtype)
            a = [vals[i] for i in ins.args]
            if op == "idx":
                k = ins.attr("axis")
                v = np.arange(grid[k], dtype=np.int64).reshape([-1 if j == k else 1 for j in range(nd)])
            elif op == "size":
                s = ins.attr("size")
                v = np.array(env[s.name] if hasattr(s, "name") else s, np.int64)
            elif op == "const":
                v = np.array(ins.attr("value"), dt)
            elif op == "load":
                arr = arrays[ins.attr("buffer")]
                if ins.attr("masked") and arr.size == 0:
                    # a zero-size piece (of a concatenation, a pad): masked off at every point
                    v = np.full(np.broadcast(*a).shape, ins.attr("fill"), arr.dtype)
                elif ins.attr("masked"):
                    mask = a[-1]
                    idx = tuple(np.where(mask, i, 0) for i in a[:-1])
                    v = np.where(mask, arr[idx], np.array(ins.attr("fill"), arr.dtype))
                else:
                    v = arr[tuple(a)]
            elif op == "result":
                r = results[ins.attr("stage")][ins.attr("slot")]
                v = r.reshape(r.shape + (1,) * (nd - p))
            elif op == "acc":
                v = acc
            elif op == "uniform":
                v = uniform_floats(ins.attr("seed"), a[0], a[1])
            elif op == "where":
                v = np.where(a[0], a[1], a[2])
            elif op == "cast":
                v = np.asarray(a[0]).astype(dt)
            elif op in UNARY_REFS:
                v = UNARY_REFS[op](a[0])
            elif op in BINARY_REFS:
                _require_safe_divisor(ins, a[1])
                v = BINARY_REFS[op](a[0], a[1])
            elif op in _EXTRA:
                v = _EXTRA[op](*a)
            else:
                raise ValueError(f"program interpreter: unknown instruction {op}")
            vals.append(np.asarray(v).astype(dt, copy=False))
    return vals


def _reduce(kind, v, grid, p, extra=None):
    axes = tuple(range(p, len(grid)))
    v = np.broadcast_to(v, grid)
    if not axes:
        return v if kind != "argmax" else np.broadcast_to(extra, grid)
    if kind == "sum":
        return np.sum(v, axis=axes, dtype=v.dtype)
    inner = int(np.prod(grid[p:], dtype=np.int64))
    if inner == 0:
        return np.broadcast_to(np.array(reduce_identity(kind, v.dtype.name), v.dtype), grid[:p]).copy()
    if kind == "max":
        return np.max(v, axis=axes)
    if kind == "min":
        return np.min(v, axis=axes)
    if kind == "argmax":
        # the reduced axes as one of `inner` points (not -1: with an outer size of 0 it is ambiguous)
        flat = v.reshape(tuple(grid[:p]) + (inner,))
        at = np.argmax(flat, axis=-1)[..., None]
        ix = np.broadcast_to(extra, grid).reshape(tuple(grid[:p]) + (inner,))
        return np.take_along_axis(ix, at, -1)[..., 0]
    raise ValueError(f"unknown reduction {kind}")


def _store(arrays, st, vals, grid):
    arr = arrays[st.buffer]
    v = np.broadcast_to(vals[st.value], grid)
    if arr.ndim == 0:
        if v.size:
            arr[()] = v.reshape(-1)[-1]
        return
    parts = np.broadcast_arrays(*[vals[i] for i in st.index], v)
    if st.accumulate:
        np.add.at(arr, tuple(parts[:-1]), parts[-1])
    else:
        arr[tuple(parts[:-1])] = parts[-1]


def _run_loop(k: LoopKernel, arrays, env):
    outer = tuple(concrete_shape(k.outer, env))
    p = len(outer)
    results = []
    for s in k.stages:
        grid = outer + tuple(concrete_shape(s.inner, env))
        vals = _eval_body(s.body, grid, p, results, arrays, env)
        if s.reduce:
            res = []
            for entry in s.reduce:
                extra = vals[entry[2]] if len(entry) > 2 else None
                res.append(np.asarray(_reduce(entry[0], vals[entry[1]], grid, p, extra)))
            results.append(res)
        else:
            results.append([])
        for st in s.stores:
            _store(arrays, st, vals, grid)


def _as_matrices(arr, ndim: int, rows: int):
    """arr's trailing `ndim` axes (the first `rows` of them the matrix rows) as one
    [rows, cols] matrix per batch entry."""
    batch = arr.shape[:arr.ndim - ndim]
    mat = arr.shape[arr.ndim - ndim:]
    return arr.reshape(batch + (int(np.prod(mat[:rows], dtype=np.int64)), int(np.prod(mat[rows:], dtype=np.int64))))


def _run_matmul(k: MatmulKernel, arrays, env, buffers):
    out_dt = np_dtype(buffers[k.out].dtype)
    nm, nn, nk = (len(k.axes(d)) for d in "mnk")
    a = _as_matrices(arrays[k.a].astype(out_dt, copy=False), nm + nk, nk if k.trans_a else nm)
    b = arrays[k.b].astype(out_dt, copy=False)
    b = _as_matrices(window_columns(b, k.window) if k.window else b, nk + nn, nn if k.trans_b else nk)
    out = _as_matrices(arrays[k.out], nm + nn, nm)
    if k.trans_a:
        a = np.swapaxes(a, -1, -2)
    if k.trans_b:
        b = np.swapaxes(b, -1, -2)
    prod = np.matmul(a, b)
    if k.alpha != 1.0:
        prod = prod * np.asarray(k.alpha, out_dt)
    if k.beta:
        prod = prod + np.asarray(k.beta, out_dt) * out
    prod = prod.astype(out_dt, copy=False)
    if k.epilogue is None:
        out[...] = prod
        return
    grid = tuple(concrete_shape(k.epilogue_domain(), env))
    vals = _eval_body(k.epilogue.body, grid, len(grid), [], arrays, env, acc=prod.reshape(grid))
    for st in k.epilogue.stores:
        _store(arrays, st, vals, grid)


def allocate(program: Program, env: dict) -> dict:
    """Arrays for outputs, updates and temps (temps as views into their arena slot)."""
    arrays = {}
    slots = {s: np.full(n, 0xFF, np.uint8) for s, n in slot_sizes(program, env).items()}
    for b, buf in program.buffers.items():
        shape = tuple(concrete_shape(buf.shape, env))
        dt = np_dtype(buf.dtype)
        if buf.kind == "const":
            arrays[b] = np.asarray(buf.value)
        elif buf.kind == "temp":
            n = int(np.prod(shape, dtype=np.int64))
            arrays[b] = slots[region_of(program, b)][:n * dt.itemsize].view(dt).reshape(shape)
        elif buf.kind in ("output", "update"):
            arrays[b] = np.empty(shape, dt)
            arrays[b].reshape(-1).view(np.uint8)[...] = 0xFF
    return arrays


def _bind_views(program: Program, arrays: dict, env: dict, of_steps: bool = False):
    """Bind every view (of_steps: only the views of step buffers, after a step moved them)."""
    for b, buf in program.buffers.items():
        if buf.kind == "view" and (program.buffers[pointer_buffer(program.buffers, b)].kind == "step") == of_steps:
            arrays[b] = _view(program, b, arrays, env)


def _view(program, b, arrays, env):
    """View b's array: its pointer buffer's memory (its root's, or a step's slice) from
    b's offset, in b's shape."""
    shape = tuple(concrete_shape(program.buffers[b].shape, env))
    off = program.offset(b)
    flat = arrays[pointer_buffer(program.buffers, b)].reshape(-1)
    return flat[off:off + int(np.prod(shape, dtype=np.int64))].reshape(shape)


def _run_scan(loop: ScanLoop, program, arrays, env, in_flight):
    """The loop: per step, point the step buffers at their slice, run the body, copy the carries."""
    length = int(concrete_shape((loop.length,), env)[0])
    for state, init in copies_before_loop(program, loop):
        arrays[state][...] = arrays[init]
    for t in range(length):
        at = length - 1 - t if loop.reverse else t
        for sl in loop.slices:
            arrays[sl.step] = arrays[sl.stacked][at, ...]   # a view, also of a 0-d slice
        _bind_views(program, arrays, env, of_steps=True)
        _run_schedule(loop.body, program, arrays, env, False, in_flight)   # checked after the loop
        for state, nxt in copies_after_step(program, loop):
            arrays[state][...] = arrays[nxt]


def _run_schedule(schedule, program, arrays, env, check_numerics, in_flight, clock=None):
    """in_flight: request buffer -> the started all-reduce (passes/collective.py)."""
    for k in schedule:
        t0 = time.perf_counter()
        if isinstance(k, MatmulKernel):
            _run_matmul(k, arrays, env, program.buffers)
        elif isinstance(k, AllReduceKernel) and k.step == "start":
            in_flight[k.request] = start_allreduce_sum(arrays[k.send], arrays[k.recv])
        elif isinstance(k, AllReduceKernel):
            in_flight.pop(k.request).Wait()
        elif isinstance(k, ScanLoop):
            _run_scan(k, program, arrays, env, in_flight)
        else:
            _run_loop(k, arrays, env)
        if clock is not None:
            clock.append(time.perf_counter() - t0)
        if check_numerics:
            _check(k, arrays, program)


def run_program(program: Program, inputs, params, env: dict, check_numerics: bool = False, clock=None):
    """Execute `program`; returns (outputs, new parameter values in Program.updates order).
    `clock`, a list, receives each kernel's seconds in schedule order (fn.profile())."""
    arrays = allocate(program, env)
    for b, a in zip(program.inputs, inputs):
        arrays[b] = a
    for b, a in zip(program.params, params):
        arrays[b] = a
    _bind_views(program, arrays, env)
    _run_schedule(program.schedule, program, arrays, env, check_numerics, {}, clock)
    outs = [arrays[b] for b in program.outputs]
    new = [arrays[u] for _, u in program.updates]
    return outs, new


def _check(k, arrays, program):
    for b in sorted(k.writes()):
        if program.buffers[b].kind == "step":
            continue    # checked as its stacked buffer, once the loop is done
        a = arrays[b]
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            buf = program.buffers[b]
            what = "NaN" if np.isnan(a).any() else "inf"
            e = NumericsError(f"kernel {k.name} ({k.source}) made a non-finite value ({what}) in "
                              f"@{buf.name}: {buf.type_str()} built at {buf.source}")
            e.kernel = next((n for n, top in enumerate(program.schedule) if top is k), None)
            raise e
