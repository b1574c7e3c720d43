"""target="cpu": the Program compiled to native code through LLVM (codegen/llvm).

build(graph, options) lowers the optimised graph to a Program, compiles it to one
native entry point and returns the CpuRunner. Per set of dynamic sizes the runner
keeps a binding plan: the arena holding every temporary (laid out by the memory
plan's slots), the pointer array the entry point reads, and the sizes array. Per
call it only writes the input/param/output pointers into that array and calls the
entry (ctypes releases the GIL). Parameters are read in place and never written;
outputs and updates go into fresh arrays the caller owns, so Function commits the
updates by swapping arrays after a successful call.

Recycling: a fresh array costs more than its allocation (a large one is mmap'ed,
so the kernel that writes it page-faults on every 4 KiB, and freeing it unmaps it
again: about 2 ms for a 16 MB output). So the runner remembers, per output, the
array it handed out last time and, per update, the parameter array the update
replaced; at the next call it writes into that array again when nobody else holds
a reference to it any more (sys.getrefcount: only the runner), else allocates.
"""
from __future__ import annotations

import sys
import threading

import numpy as np

from codegen.llvm import compile_program, load_program
from nngraph.errors import NumericsError
from nngraph.types import concrete_shape, is_float, np_dtype
from passes.memory import arena_layout, region_of
from passes.program import format_program

from .bindings import BindingCache
from .function import Runner
from .gemm_limits import check_gemm_sizes
from .sizes import check_total, checked_nbytes, element_count

ALIGN = 64


class _Binding:
    """Everything that depends only on the dynamic sizes: arena, pointers, shapes."""

    def __init__(self, runner, env):
        p = runner.program
        check_gemm_sizes(p, env)
        self.shapes = {b.id: concrete_shape(b.shape, env) for b in p.buffers.values()}
        self.sizes = np.array([env[s] for s in runner.symbols] or [0], dtype=np.int64)
        self.ptrs = np.zeros(runner.n_ptrs, dtype=np.uint64)
        # arena: one region per plan slot, sized for its largest temp
        offsets, total = arena_layout(p, env, ALIGN)
        self.peak_bytes = check_total(total, "the work buffer of these sizes")
        self.arena = np.empty(total + 2 * ALIGN, dtype=np.uint8)
        base = self.arena.ctypes.data
        base += (-base) % ALIGN
        self.temps = {}
        for b in p.buffers.values():
            if b.kind == "temp":
                addr = base + offsets[region_of(p, b.id)]
                self.ptrs[b.id] = addr
                self.temps[b.id] = (addr - self.arena.ctypes.data)
            elif b.kind == "const":
                self.ptrs[b.id] = runner.consts[b.id].ctypes.data
        self.ptrs_addr = self.ptrs.ctypes.data
        self.sizes_addr = self.sizes.ctypes.data
        self.fresh = [(b, self.shapes[b], np_dtype(p.buffers[b].dtype)) for b in runner.fresh_ids]

    def temp_view(self, buf):
        n = element_count(self.shapes[buf.id])
        off = self.temps[buf.id]
        return self.arena[off:off + n * np_dtype(buf.dtype).itemsize].view(np_dtype(buf.dtype)).reshape(self.shapes[buf.id])


def _address(a, known, seen) -> int:
    e = known.get(id(a))
    if e is None or e[0] is not a:
        e = (a, a.ctypes.data)
    seen[id(a)] = e
    return e[1]


class CpuRunner(Runner):
    def __init__(self, program, compiled, check_numerics=False):
        self.program = program
        self.compiled = compiled
        self.check_numerics = check_numerics
        self.symbols = compiled.symbols
        self.n_ptrs = max(program.buffers) + 1 if program.buffers else 1
        self.consts = {b.id: np.ascontiguousarray(b.value, dtype=np_dtype(b.dtype)).reshape(
            tuple(int(s) for s in b.shape)) for b in program.buffers.values() if b.kind == "const"}
        self.input_ids = list(program.inputs)
        self.param_ids = list(program.params)
        # buffers the call writes into fresh arrays it hands out: outputs and updates
        self.fresh_ids = sorted({b.id for b in program.buffers.values() if b.kind in ("output", "update")})
        self._bindings = BindingCache(lambda env: _Binding(self, env))
        self._spare = {}      # buffer id -> array from the last call, reusable when unshared
        self._addr = {}       # id(array) -> (array, data address), arrays of the last call
        kind = {b.id: b.kind for b in program.buffers.values()}
        self._out_fresh = [bid for bid in self.fresh_ids if kind[bid] == "output"]
        pos = {bid: j for j, bid in enumerate(self.param_ids)}
        # update buffer -> position of the parameter it replaces (that array is recycled)
        self._upd_param = [(ub, pos[pb]) for pb, ub in program.updates
                           if pb in pos and kind.get(ub) == "update"]
        self._lock = threading.Lock()
        self._entry = compiled.entry
        self.stats = {"kernels": program.kernel_count(), "library_calls": compiled.stats["library_calls"],
                      "peak_bytes": 0, "cache_hit": compiled.stats["cache_hit"],
                      "codegen_seconds": compiled.stats["codegen_seconds"], "blas": compiled.stats["blas"]}

    def _binding(self, env) -> _Binding:
        key = tuple(env[s] for s in self.symbols)
        return self._bindings.get(key, env)

    def run(self, inputs, params, env):
        with self._lock:
            bd = self._binding(env)
            self.stats["peak_bytes"] = bd.peak_bytes
            ptrs = bd.ptrs
            # data addresses of the arrays of the last call, by id (the cache holds the
            # array alive, so its id is not reused): a.ctypes.data costs ~1.5 us each
            seen, known = {}, self._addr
            for bid, a in zip(self.input_ids, inputs):
                ptrs[bid] = _address(a, known, seen)
            for bid, a in zip(self.param_ids, params):
                ptrs[bid] = _address(a, known, seen)
            fresh = {}
            spare = self._spare
            for bid, shape, dt in bd.fresh:
                a = spare.pop(bid, None)
                # references: `a` here, getrefcount's argument and the address cache;
                # more means someone else holds it
                if a is None or sys.getrefcount(a) > 2 + (id(a) in known) or a.shape != shape or a.dtype != dt:
                    a = np.empty(shape, dt)
                fresh[bid] = a
                ptrs[bid] = _address(a, known, seen)
            a = None
            self._addr = seen
            rc = self._entry(bd.ptrs_addr, bd.sizes_addr)
            if rc:
                raise self._numerics_error(rc - 1, bd, fresh)
            for bid in self._out_fresh:
                spare[bid] = fresh[bid]
            for ub, j in self._upd_param:
                spare[ub] = params[j]
            vals = dict(fresh)
            vals.update(zip(self.input_ids, inputs))
            vals.update(zip(self.param_ids, params))
            vals.update(self.consts)
            handed = set()
            outs = [self._hand_out(bid, bd, vals, handed) for bid in self.program.outputs]
            new = [self._hand_out(ub, bd, vals, handed) for _, ub in self.program.updates]
            return outs, new

    def _hand_out(self, bid, bd, vals, handed):
        """An array the caller owns: a fresh output as is (once), anything else copied."""
        buf = self.program.buffers[bid]
        if buf.kind == "view":
            root = self.program.root(bid)
            return _part(self.program, bid, self._hand_out(root, bd, vals, handed), bd.shapes[bid]).copy()
        if buf.kind == "temp":
            return bd.temp_view(buf).copy()
        a = vals[bid]
        if buf.kind in ("output", "update") and bid not in handed:
            handed.add(bid)
            return a
        return np.array(a, copy=True)

    def _numerics_error(self, kno, bd, fresh):
        kern = self.program.schedule[kno]
        bad = None
        for bid in sorted(kern.writes()):
            buf = self.program.buffers[bid]
            if not is_float(buf.dtype):
                continue
            root = self.program.buffers[self.program.root(bid)]
            a = fresh.get(root.id)
            if a is None and root.kind == "temp":
                a = bd.temp_view(root)
            if a is not None and root.id != bid:     # a view: only its own elements
                a = _part(self.program, bid, a, bd.shapes[bid])
            if a is not None and not np.all(np.isfinite(a)):
                bad = (buf, "NaN" if np.isnan(a).any() else "inf")
                break
        what = f"in {bad[0].name}: {bad[0].type_str()}" if bad else ""
        where = (bad[0].source if bad and bad[0].source else None) or kern.source or "?"
        kind = bad[1] if bad else "NaN or inf"
        err = NumericsError(f"{kern.name} made a non-finite value ({kind}) {what} built at {where} "
                            f"(kernel {kno} computes: {kern.source or kern.name}); no update was applied")
        err.kernel = kno
        return err


def _part(program, bid, root_array, shape):
    """The elements of view `bid` in its root's array, in the view's shape."""
    off = program.offset(bid)
    return root_array.reshape(-1)[off:off + element_count(shape)].reshape(shape)


def build(graph, options):
    """Lower, compile and wrap; returns (runner, extra dump stages). The runner's
    stats["compile_time"] has the seconds of lowering, memory plan and each codegen
    stage (nngraph/compiler.py adds the earlier stages)."""
    import time

    from passes.lowering import to_program
    from .conv_choice import conv_choice_for
    t0 = time.perf_counter()
    choices = conv_choice_for("cpu", build_program)
    program = to_program(graph, options.get("opt_level", 2), choices)
    lowering = time.perf_counter() - t0
    program.stats["provisional_choices"] = list(getattr(choices, "provisional", ()))   # compile_cache.store
    runner, stages = build_program(program, options.get("check_numerics", False))
    plan = program.stats.get("memory_plan_seconds", 0.0)
    runner.stats["compile_time"] = {"lowering": lowering - plan, "memory_plan": plan,
                                    **runner.compiled.stats["seconds"]}
    return runner, stages


def build_program(program, check_numerics=False):
    compiled = compile_program(program, check_numerics=check_numerics)
    runner = CpuRunner(program, compiled, check_numerics)
    runner.stats["cache"] = "object code" if compiled.stats["cache_hit"] else "none"
    return runner, _stages(format_program(program), compiled)


def build_loaded(program, obj: bytes, library_calls: int, check_numerics=False, profile=False):
    """The runner of a Program whose object code the compile cache kept
    (runtime/compile_cache.py): no lowering, no LLVM."""
    compiled = load_program(program, obj, library_calls, check_numerics, profile)
    runner = CpuRunner(program, compiled, check_numerics)
    runner.stats["cache"] = "compiled function"
    runner.stats["compile_time"] = {"load": compiled.stats["seconds"]["load"]}
    return runner, _stages(lambda: format_program(program), compiled)


def _stages(kernels, compiled) -> dict:
    return {"kernels": kernels, "llvm": compiled.llvm_text, "asm": compiled.asm_text}
