"""The whole schedule as one native function:

    i32 nngraph_entry(i8** bufs, i64* sizes)

`bufs[id]` is the data pointer of buffer `id`, `sizes[j]` the value of the j-th
symbolic size (passes.program.symbols order). Kernels run in schedule order (a
ScanLoop's steps run here too, codegen/llvm/loop.py: no Python per step); a
loop kernel whose work is above a threshold runs its first outer axis cut into
N_THREADS ranges (one per CPU the process may use), all but the first on threads
made with pthread_create (declared external; the C library is already in the
process); a full reduction is cut the same way into per-thread partials. With check_numerics, every float
buffer a kernel writes is scanned for NaN/inf right after it, and the entry
returns 1 + the kernel's index on the first bad one (0 means success).

With profile=True (NNGRAPH_PROFILE=1 in the environment), the entry adds each
kernel's wall time in nanoseconds (clock_gettime, CLOCK_MONOTONIC) to the global
array `nngraph_prof` (one i64 per kernel), which runtime/cpu.py reads back.
"""
from __future__ import annotations

import os
import re

import llvmlite.ir as ir

from codegen.host import host_facts
from codegen.tuning import gemm_split_work, loop_threads, tuning
from nngraph.types import is_float
from passes.coalesce import unit_lead
from passes.collective import AllReduceKernel
from passes.loop import ScanLoop
from passes.program import LoopKernel, MatmulKernel, symbols as program_symbols

from . import blas, target
from .collective import emit_all_reduce
from .conv_gemm import emit_fused_product, fused_epilogue
from .irtypes import I1, I8P, I32, I64, VOID, i64
from .kernel import (emit_finish_function, emit_loop_function, emit_partial_function, partial_type,
                     thread_split)
from .loop import emit_scan, private_pointers
from .loop_rows import emit_scan_by_rows, rows_plan
from .loops import FnBuilder, mark_unoptimised
from .matmul import emit_matmul_function, split_axis, splits_columns
from .symbols import ENTRY, PROFILE
from .work import product_sizes, static_product, static_work


def _thread_count() -> int:
    """NNGRAPH_NUM_THREADS, default the CPUs this process may run on (codegen/tuning.py)."""
    return loop_threads(host_facts(), os.environ)


def _struct_bytes(t) -> int:
    """Bytes of a literal struct of scalars as LLVM lays it out for the host."""
    return t.get_abi_size(target.target_data())


# Thresholds derived from the host (codegen/tuning.py: thread start cost, clock,
# vector width), module attributes so tests can lower them. They are part of the
# IR text, so of the cache key too.
# iterations x body instructions above which a loop kernel is cut across threads
THREAD_WORK = tuning().loop_split_work
# multiply-adds above which a GEMM is split into single-threaded BLAS calls, one per
# thread (high: a split halves each call's panel reuse, and when the cores are shared
# the second thread may wait a scheduler slice); a MatmulKernel marked own_threads
# is split from GEMM_COLUMN_WORK instead (_launch_rows_or_columns)
GEMM_WORK = tuning().gemm_split_work
_DERIVED_GEMM_WORK = GEMM_WORK
# multiply-adds above which a GEMM with more output columns than rows is split along
# its columns into single-threaded BLAS calls, one per thread (matmul.py, tuning.py)
GEMM_COLUMN_WORK = tuning().gemm_column_split_work
# threads a big loop kernel or GEMM is cut across (NNGRAPH_NUM_THREADS overrides)
N_THREADS = _thread_count()
# a scan whose steps are independent across rows runs by row ranges, one per thread
# (loop_rows.py); NNGRAPH_LOOP_ROWS=0 keeps the per-step splits
ROW_LOOPS = os.environ.get("NNGRAPH_LOOP_ROWS", "1").strip().lower() not in ("0", "off", "false", "no")

_LOOP_FN = ir.FunctionType(VOID, [ir.PointerType(I8P), ir.PointerType(I64), I64, I64, I8P])
# thread argument: {fn, bufs, sizes, lo, hi, extra}
_ARGS = ir.LiteralStructType([ir.PointerType(_LOOP_FN), ir.PointerType(I8P), ir.PointerType(I64), I64, I64, I8P])
NULL = ir.Constant(I8P, None)


def _clean(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:40]



def build_module(program, check_numerics=False, threads=True, profile=False) -> tuple[str, dict]:
    """LLVM IR text of the Program's module, and info (symbols, per-kernel notes)."""
    syms = program_symbols(program)
    module = ir.Module(name="nngraph")
    module.triple = target.triple()
    module.data_layout = target.data_layout()
    tramp = _trampoline(module)
    fb = FnBuilder(module, ENTRY, [], ret=I32, program=program, symbols=syms)
    fb.fn.linkage = "external"
    notes = []
    if any(isinstance(k, ScanLoop) for k in program.schedule):
        private_pointers(fb, max(program.buffers) + 1)
    prof = _Profiler(fb, len(program.schedule)) if profile else None

    def emit(kern, base):
        emit_kernel(fb, kern, base, tramp, threads, notes, emit)

    for kno, kern in enumerate(program.schedule):
        if prof:
            prof.start()
        emit(kern, f"k{kno}_{_clean(kern.name)}")
        if prof:
            prof.stop(kno)
        if check_numerics:
            _check(fb, kern, kno)
    fb.b.ret(ir.Constant(I32, 0))
    fb.finish()
    return str(module), {"symbols": syms, "notes": notes}


def emit_kernel(fb: FnBuilder, kern, base: str, tramp, threads: bool, notes: list, emit, in_loop=False) -> None:
    """Call kern's code from the entry function at the builder's position (`emit(kern,
    base)` does the same for the kernels of a loop's body, in_loop=True); notes gets its kind."""
    module, program, syms = fb.module, fb.program, fb.symbols
    if isinstance(kern, MatmulKernel) and (kern.own_threads or not in_loop) \
            and (fused := fused_epilogue(program, kern)) is not None:
        # each thread's part of the product, then its epilogue (conv_gemm.py)
        work = static_product(product_sizes(kern))
        split = product_split_work(kern)
        emit_fused_product(fb, base, kern, fused, lambda f, n0: _launch(fb, f, n0, *work, tramp, threads, split))
        notes.append("blas")
    elif isinstance(kern, MatmulKernel):
        factor, wsyms = static_product(product_sizes(kern))
        if threads and N_THREADS > 1 and splits_columns(program, kern):
            _launch_rows_or_columns(fb, base, kern, (factor, wsyms), tramp, in_loop)
        else:
            f = emit_matmul_function(module, base, program, syms, kern)
            _launch(fb, f, fb.numel(split_axis(program, kern)), factor, wsyms, tramp, threads, gemm_work())
        if kern.epilogue is not None:
            outer = kern.epilogue_domain()
            ef = emit_loop_function(module, base + "_epi", program, syms, outer, [kern.epilogue],
                                    acc_buffer=kern.out)
            _launch_loops(fb, ef, outer, [kern.epilogue], tramp, threads)
        notes.append("blas")
    elif isinstance(kern, LoopKernel) and threads and N_THREADS > 1 and (plan := thread_split(kern)) \
            and _may_be_big((), kern.stages[:1]):
        _launch_split_reduction(fb, base, kern, plan, tramp)
        notes.append("loop")
    elif isinstance(kern, AllReduceKernel):
        emit_all_reduce(fb, kern)
        notes.append("mpi")
    elif isinstance(kern, LoopKernel):
        f = emit_loop_function(module, base, program, syms, tuple(kern.outer), list(kern.stages), unit_lead=True)
        _launch_loops(fb, f, tuple(kern.outer), kern.stages, tramp, threads, unit_lead(kern.outer))
        notes.append("loop")
    elif isinstance(kern, ScanLoop):
        rows = rows_plan(program, kern) if threads and N_THREADS > 1 and not in_loop and ROW_LOOPS else None
        if rows is not None:      # every step of a row range per thread (loop_rows.py)
            emit_scan_by_rows(fb, kern, base, rows, THREAD_WORK, lambda work: _parts(fb.b, work, THREAD_WORK),
                              lambda f, n0, parts, extra: _split(fb, f, n0, tramp, extra, 0, parts))
        else:
            emit_scan(fb, kern, base, lambda k, name: emit_kernel(fb, k, name, tramp, threads, notes, emit, True))
        notes.append("scan")
    else:
        raise TypeError(f"unknown kernel type {type(kern).__name__}")


class _Profiler:
    """Per-kernel wall time (ns) accumulated into the global nngraph_prof[k]."""

    def __init__(self, fb, n):
        self.fb = fb
        m = fb.module
        ts = ir.LiteralStructType([I64, I64])
        self.clock = ir.Function(m, ir.FunctionType(I32, [I32, ts.as_pointer()]), "nngraph_clock_gettime")
        self.arr = ir.GlobalVariable(m, ir.ArrayType(I64, max(n, 1)), PROFILE)
        self.arr.initializer = ir.Constant(ir.ArrayType(I64, max(n, 1)), None)
        self.ts = fb.alloca(ts, "ts")
        self.t0 = None

    def _now(self):
        b = self.fb.b
        b.call(self.clock, [ir.Constant(I32, 1), self.ts])
        sec = b.load(b.gep(self.ts, [ir.Constant(I32, 0), ir.Constant(I32, 0)]))
        ns = b.load(b.gep(self.ts, [ir.Constant(I32, 0), ir.Constant(I32, 1)]))
        return b.add(b.mul(sec, i64(1_000_000_000)), ns)

    def start(self):
        self.t0 = self._now()

    def stop(self, k):
        b = self.fb.b
        dt = b.sub(self._now(), self.t0)
        p = b.gep(self.arr, [i64(0), i64(k)])
        b.store(b.add(b.load(p), dt), p)


def _trampoline(module):
    """i8* nngraph_thread(i8* arg): unpack {fn, bufs, sizes, lo, hi, extra} (_ARGS) and call
    fn(bufs, sizes, lo, hi, extra)."""
    fn = ir.Function(module, ir.FunctionType(ir.IntType(8).as_pointer(), [ir.IntType(8).as_pointer()]),
                     "nngraph_thread")
    fn.linkage = "internal"
    mark_unoptimised(fn)
    b = ir.IRBuilder(fn.append_basic_block())
    p = b.bitcast(fn.args[0], _ARGS.as_pointer())
    vals = [b.load(b.gep(p, [ir.Constant(I32, 0), ir.Constant(I32, j)])) for j in range(6)]
    b.call(vals[0], vals[1:])
    b.ret(ir.Constant(ir.IntType(8).as_pointer(), None))
    return fn


def _may_be_big(outer, stages) -> bool:
    factor, syms = static_work(outer, stages)
    return factor > 0 and (bool(syms) or factor >= THREAD_WORK)


def _launch_loops(fb: FnBuilder, f, outer, stages, tramp, threads, first=0):
    """f over outer axis `first` (the axes before it are of size one and f leaves them out)."""
    if not outer:
        fb.b.call(f, [fb.bufs_arg, fb.sizes_arg, i64(0), i64(1), NULL])
        return
    factor, syms = static_work(outer, stages)
    _launch(fb, f, fb.size(outer[first]), factor, syms, tramp, threads, THREAD_WORK)


def _launch_rows_or_columns(fb: FnBuilder, base, kern, work, tramp, in_loop):
    """A one-call GEMM cut along its longer output axis (each part then re-packs only
    the smaller operand; matmul.py), decided here when both sizes are known, else at
    run time (then both variants are emitted): rows above GEMM_WORK, columns
    above GEMM_WORK too, or above GEMM_COLUMN_WORK in a loop's step. There the products
    have few rows (an LSTM step's h @ W_hh: N=32), which a BLAS's own threads barely
    speed up, and its workers, woken every step, spin on the cores between steps. Out
    of loops a product under GEMM_WORK stays one call on the BLAS's threads, unless it
    is marked own_threads (a batch-1 convolution, passes/lower/conv.py, between loops
    split across the same cores): then either axis is cut above GEMM_COLUMN_WORK."""
    b, program = fb.b, fb.program
    rows, cols = fb.numel(split_axis(program, kern)), fb.numel(kern.axes("n"))

    def by_columns():
        cf = emit_matmul_function(fb.module, base + "_cols", program, fb.symbols, kern, columns=True)
        _launch(fb, cf, cols, *work, tramp, True, GEMM_COLUMN_WORK if in_loop else product_split_work(kern))

    def by_rows():
        f = emit_matmul_function(fb.module, base, program, fb.symbols, kern)
        _launch(fb, f, rows, *work, tramp, True, product_split_work(kern))

    (n_rows, rows_unknown), (n_cols, cols_unknown) = (static_product(split_axis(program, kern)),
                                                      static_product(kern.axes("n")))
    if not rows_unknown and not cols_unknown:
        (by_columns if n_cols > n_rows else by_rows)()
        return
    with b.if_else(b.icmp_signed(">", cols, rows)) as (columns, row_parts):
        with columns:
            by_columns()
        with row_parts:
            by_rows()


def product_split_work(kern) -> int:
    """The work above which kern's product is split across our threads: GEMM_COLUMN_WORK
    for a product marked own_threads (passes/lower/conv.py: split across our threads as
    the kernels around it are), else gemm_work()."""
    return GEMM_COLUMN_WORK if kern.own_threads else gemm_work()


def gemm_work() -> int:
    """GEMM_WORK as the chosen BLAS's threads per call (blas.threads_per_call) make it,
    when GEMM_WORK is the derived one (tuning.gemm_split_work): with one thread per call
    (nngraph's worker pool splits the products, MKL's sequential layer) the work that
    pays for handing a part to one of our threads, since our threads are then the only
    way a product uses more than one core (MLP 784-512-256-10 inference b128 under
    sequential MKL: 982 us on one core, OpenBLAS's two threads 709 us); with several,
    the BLAS's own split below GEMM_SPLIT_OVER_BLAS times the work that wakes one."""
    if GEMM_WORK != _DERIVED_GEMM_WORK:
        return GEMM_WORK
    return gemm_split_work(tuning().blas_thread_work, tuning().own_split_work, N_THREADS, blas.threads_per_call())


def _launch(fb: FnBuilder, f, n0, factor, syms, tramp, threads, threshold):
    """Call f over [0, n0), split across threads (_parts) when factor * syms >= threshold."""
    b = fb.b
    if not threads or N_THREADS < 2 or (not syms and factor < threshold) or factor == 0:
        b.call(f, [fb.bufs_arg, fb.sizes_arg, i64(0), n0, NULL])
        return
    work = i64(factor)
    for s in syms:
        work = b.mul(work, fb.size(s))
    big = b.and_(b.icmp_signed(">=", work, i64(threshold)), b.icmp_signed(">=", n0, i64(2)))
    with b.if_else(big) as (then, otherwise):
        with then:
            _split(fb, f, n0, tramp, parts=_parts(b, work, threshold))
        with otherwise:
            b.call(f, [fb.bufs_arg, fb.sizes_arg, i64(0), n0, NULL])


def _pthread_decls(module):
    create = module.globals.get("nngraph_pthread_create")
    if create is None:
        p8 = ir.IntType(8).as_pointer()
        create = ir.Function(module, ir.FunctionType(I32, [I64.as_pointer(), p8, ir.FunctionType(p8, [p8]).as_pointer(), p8]),
                             "nngraph_pthread_create")
        ir.Function(module, ir.FunctionType(I32, [I64, p8.as_pointer()]), "nngraph_pthread_join")
    return create, module.globals["nngraph_pthread_join"]


def _parts(b, work, threshold):
    """How many threads a split uses: about one per `threshold` units of work, at
    least two, at most N_THREADS (on a many-core machine a kernel just above the
    threshold does not pay for starting a thread per core)."""
    per = b.sdiv(work, i64(threshold))
    per = b.select(b.icmp_signed("<", per, i64(2)), i64(2), per)
    return b.select(b.icmp_signed(">", per, i64(N_THREADS)), i64(N_THREADS), per)


def _split(fb: FnBuilder, f, n0, tramp, extra=None, stride=0, parts=None):
    """[0, n0) cut into `parts` (<= N_THREADS, default N_THREADS) near-equal ranges:
    ranges 1.. on new threads, range 0 here; a range whose thread cannot be made runs
    here after the others. Range t gets `extra + t * stride` (its partial-result slot)
    as the extra argument; slots from `parts` to N_THREADS get empty ranges, so each
    holds its reduction's identity. One call of the module's nngraph_parallel: the
    spawn and join loops exist once per module, not once per launch (a LeNet step has
    about 40 launches; inlined, they doubled the entry's LLVM time)."""
    b = fb.b
    helper = _parallel_function(fb.module, tramp)
    T = parts if parts is not None else i64(N_THREADS)
    b.call(helper, [fb.bufs_arg, fb.sizes_arg, f, n0, T, extra if extra is not None else NULL, i64(stride)])


PARALLEL = "nngraph_parallel"


def _parallel_function(module, tramp):
    """void nngraph_parallel(bufs, sizes, f, n0, parts, extra, stride): what _split does."""
    fn = module.globals.get(PARALLEL)
    if fn is not None:
        return fn
    fb = FnBuilder(module, PARALLEL, [ir.PointerType(_LOOP_FN), I64, I64, I8P, I64])
    fb.unoptimised()        # thread starts and joins
    f, n0, T, extra, stride = fb.args
    b = fb.b
    create, join = _pthread_decls(module)
    p8 = ir.IntType(8).as_pointer()
    args = fb.alloca(ir.ArrayType(_ARGS, N_THREADS), "thread_args")
    tids = fb.alloca(ir.ArrayType(I64, N_THREADS), "tids")
    rcs = fb.alloca(ir.ArrayType(I32, N_THREADS), "thread_rc")
    has_extra = b.icmp_unsigned("!=", extra, NULL)

    def bound(t):
        return b.sdiv(b.mul(n0, t), T)

    def extra_of(t):
        return b.select(has_extra, b.gep(extra, [b.mul(t, stride)]), NULL)

    def slot(arr, t, j=None):
        ix = [i64(0), t] + ([ir.Constant(I32, j)] if j is not None else [])
        return b.gep(arr, ix)

    with fb.loop(i64(1), T, "spawn") as t:
        a = slot(args, t)
        for j, v in enumerate([f, fb.bufs_arg, fb.sizes_arg, bound(t), bound(b.add(t, i64(1))), extra_of(t)]):
            b.store(v, b.gep(a, [ir.Constant(I32, 0), ir.Constant(I32, j)]))
        b.store(b.call(create, [slot(tids, t), ir.Constant(p8, None), tramp, b.bitcast(a, p8)]), slot(rcs, t))
    b.call(f, [fb.bufs_arg, fb.sizes_arg, i64(0), bound(i64(1)), extra_of(i64(0))])
    with fb.loop(i64(1), T, "join") as t:
        with b.if_else(b.icmp_signed("==", b.load(slot(rcs, t)), ir.Constant(I32, 0))) as (ok, failed):
            with ok:
                b.call(join, [b.load(slot(tids, t)), ir.Constant(p8.as_pointer(), None)])
            with failed:
                b.call(f, [fb.bufs_arg, fb.sizes_arg, bound(t), bound(b.add(t, i64(1))), extra_of(t)])
    with b.if_then(has_extra):
        with fb.loop(T, i64(N_THREADS), "unused") as t:
            b.call(f, [fb.bufs_arg, fb.sizes_arg, n0, n0, extra_of(t)])
    b.ret_void()
    return fb.finish()


def _launch_split_reduction(fb: FnBuilder, base, kern, plan, tramp):
    """A full reduction (no outer domain) above the threshold: each thread sums
    its range of the first inner axis into its own partial, then one combine + the
    later stages. Below the threshold, the plain kernel."""
    module, program, syms = fb.module, fb.program, fb.symbols
    st = kern.stages[0]
    plain = emit_loop_function(module, base, program, syms, (), list(kern.stages))
    part = emit_partial_function(module, base + "_part", program, syms, st)
    fin = emit_finish_function(module, base + "_fin", program, syms, kern, plan, N_THREADS)
    b = fb.b
    factor, wsyms = static_work((), [st])
    n0 = fb.size(st.inner[0])
    work = i64(factor)
    for s in wsyms:
        work = b.mul(work, fb.size(s))
    big = b.and_(b.icmp_signed(">=", work, i64(THREAD_WORK)), b.icmp_signed(">=", n0, i64(2)))
    with b.if_else(big) as (then, otherwise):
        with then:
            parts = fb.alloca(ir.ArrayType(partial_type(st), N_THREADS), "partials")
            p0 = b.bitcast(parts, I8P)
            _split(fb, part, n0, tramp, p0, _struct_bytes(partial_type(st)), parts=_parts(b, work, THREAD_WORK))
            b.call(fin, [fb.bufs_arg, fb.sizes_arg, i64(0), i64(1), p0])
        with otherwise:
            b.call(plain, [fb.bufs_arg, fb.sizes_arg, i64(0), i64(1), NULL])


def _check_fn(module, dtype):
    """i1 nngraph_nonfinite_<t>(ptr, n): any element with an all-ones exponent."""
    name = f"nngraph_nonfinite_{dtype}"
    fn = module.globals.get(name)
    if fn is not None:
        return fn
    it = ir.IntType(32 if dtype == "float32" else 64)
    mask = 0x7F800000 if dtype == "float32" else 0x7FF0000000000000
    fn = ir.Function(module, ir.FunctionType(I1, [it.as_pointer(), I64]), name)
    fn.linkage = "internal"
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    acc = b.alloca(it)
    b.store(ir.Constant(it, 0), acc)
    head, body, end = (fn.append_basic_block(x) for x in ("head", "body", "end"))
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    i.add_incoming(i64(0), entry)
    b.cbranch(b.icmp_signed("<", i, fn.args[1]), body, end)
    b.position_at_end(body)
    bits = b.and_(b.load(b.gep(fn.args[0], [i])), ir.Constant(it, mask))
    bad = b.icmp_unsigned("==", bits, ir.Constant(it, mask))
    b.store(b.or_(b.load(acc), b.zext(bad, it)), acc)
    i.add_incoming(b.add(i, i64(1)), body)
    b.branch(head)
    b.position_at_end(end)
    b.ret(b.icmp_unsigned("!=", b.load(acc), ir.Constant(it, 0)))
    return fn


def _check(fb: FnBuilder, kern, kno):
    b = fb.b
    for bid in sorted(kern.writes()):
        buf = fb.program.buffers[bid]
        if not is_float(buf.dtype) or buf.kind == "step":   # a step buffer: checked as its stacked buffer
            continue
        fn = _check_fn(fb.module, buf.dtype)
        ptr = b.bitcast(fb.ptr(bid), fn.args[0].type)
        bad = b.call(fn, [ptr, fb.numel(buf.shape)])
        fail = fb.fn.append_basic_block(f"nonfinite_k{kno}")
        cont = fb.fn.append_basic_block(f"finite_k{kno}")
        b.cbranch(bad, fail, cont)
        b.position_at_end(fail)
        b.ret(ir.Constant(I32, kno + 1))
        b.position_at_end(cont)

