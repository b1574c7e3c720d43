"""A one-image float32 convolution computed directly from its (padded, phase-split)
input, without im2col: a register-blocked kernel emitted as LLVM IR.

Why: at batch 1 the im2col + GEMM path writes and re-reads a window matrix KH*KW
times the input's size (7.2 MB for a ResNet-50 3x3 layer at 56x56, over the L2
cache), and the BLAS's panels of 16-float columns run part empty at small spatial
sizes. Reading the input in place costs neither.

The input is the layer's DirectWindow buffer (passes/lower/conv_direct.py): per
input channel, sh x sw phase planes of Hq x Wq (plane (a, b) holds the zero-padded
input's rows a, a+sh, ... and columns b, b+sw, ...), so that for any stride an
output point q = oh * Wq + ow of a flattened plane reads, at tap (kh, kw), the
element q + (a constant of the tap) of one plane: consecutive outputs read
consecutive inputs, and one unaligned vector load serves `lanes` output points.
Points with ow >= OW (the plane's last columns) are computed and dropped.

The kernel's tile is R output channels x T vectors of consecutive flattened points
(R*T accumulators in registers): per input channel and tap, T vector loads of the
input and R broadcast weights (read in place, OIHW: each weight row is contiguous
per input channel, so the R rows stay in L1 across taps), R*T multiply-adds.
tile_shape derives R and T from the host's vector registers (32 with AVX-512, 16
with AVX2). On an AVX-512 Xeon (one thread, MKL's sgemm on im2col's matrix for
comparison, without the im2col) ResNet-50's 3x3 layers ran at 160-186 GFLOP/s
directly against 100-147 for the GEMM. The tile's results are stored compacted to NCHW [Co, OH*OW] with masked
stores (a vector of flattened points spans up to (lanes-1)//Wq + 2 output rows).

`f(bufs, sizes, lo, hi, extra)` computes output channels [lo, hi): the same
signature and split as matmul.py's product over its rows, so conv_gemm.py's fused
epilogue and entry.py's thread split treat it as they treat a BLAS product.
"""
from __future__ import annotations

import llvmlite.ir as ir
import numpy as np

from codegen.host import host_facts

from .irtypes import F32, I1, I32, I64, VOID, i64, intrinsic
from .conv_epilogue import emit_tile_epilogue, masked_load
from .conv_epilogue import splat as _splat
from .loops import FnBuilder

I8P_ = ir.PointerType(ir.IntType(8))
F32P = ir.PointerType(F32)


def vector_registers(vector_bits: int) -> int:
    """Architectural vector registers of the widest vectors: 32 with AVX-512, else 16."""
    return 32 if vector_bits >= 512 else 16


# vector registers left free of the tile for LLVM's scheduler, which loads the next
# tap's inputs early: with one to three free (tiles 4x6 and 6x4 of AVX-512's 32) it
# spilled accumulators to the stack in the inner loop (46-97 stack references per
# 216 multiply-adds) and ran 15-25% slower than the 8x3 tile, which it did not spill
SCHEDULER_REGISTERS = 4


def tile_shape(vector_bits: int) -> tuple:
    """(R output channels, T point vectors) of a tile: R a power of two (channel counts
    are), R*T accumulators + T input vectors + one broadcast weight within the vector
    registers less SCHEDULER_REGISTERS, the most multiply-adds per load slot: an input
    vector load is unaligned (its flattened offsets are arbitrary) and most cross a
    cache line, two slots; a weight is one broadcast element, one slot: R*T / (2T + R).
    AVX-512 (32 registers): (8, 3); AVX2 (16): (4, 2)."""
    regs = vector_registers(vector_bits) - SCHEDULER_REGISTERS
    best = None
    for r in (1, 2, 4, 8, 16):
        t = (regs - 1) // (r + 1)
        if t < 1:
            continue
        score = (r * t / (2 * t + r), r * t)
        if best is None or score > best[0]:
            best = (score, (r, t))
    return best[1]


def lanes_of(vector_bits: int) -> int:
    return max(1, vector_bits // 32)


def emit_direct_function(module, name, program, symbols, kern, epilogue=None):
    """`void f(bufs, sizes, lo, hi, extra)`: kern's direct convolution (kern.window) for
    output channels [lo, hi); with `epilogue` (a conv_epilogue.TileEpilogue of kern's
    own epilogue), that applied to each tile before it is stored."""
    bits = host_facts().vector_bits
    if not kern.window.in_place and lanes_of(bits) > kern.window.lanes:
        raise NotImplementedError(f"{kern.name}: {lanes_of(bits)}-lane vectors read past the direct "
                                  f"convolution's copy, whose slack covers {kern.window.lanes}")
    core = emit_direct_core(module, name + "_core", kern.window, bits, epilogue)
    fb = FnBuilder(module, name, [I64, I64, I8P_], program=program, symbols=symbols)
    lo, hi, _ = fb.args
    operands = [fb.ptr(op[0]) for op in epilogue.operands] if epilogue else []
    fb.b.call(core, [fb.ptr(kern.b), fb.ptr(kern.a), fb.ptr(kern.out), *operands, lo, hi])
    fb.b.ret_void()
    return fb.finish()


def emit_direct_core(module, name, win, vector_bits, epilogue=None):
    """`void core(float* x, float* w, float* y, float* operands..., i64 lo, i64 hi)`:
    y[lo:hi] of the window `win` (a DirectWindow), x its phase-split input (or x
    itself, win.in_place), w [Co, C*KH*KW], the operands those of `epilogue`."""
    R, T = tile_shape(vector_bits)
    V = lanes_of(vector_bits)
    n_ops = len(epilogue.operands) if epilogue else 0
    fn = ir.Function(module, ir.FunctionType(VOID, [F32P] * (3 + n_ops) + [I64, I64]), name)
    fn.linkage = "internal"
    _pointer_attributes(fn, n_ops)
    ptrs, (lo, hi) = list(fn.args[:3 + n_ops]), fn.args[3 + n_ops:]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    vectors = -(-win.flat_points() // V)
    full, rest = divmod(vectors, T)
    # in place, the last vector of points may end past x (no slack): its loads are masked
    tail = win.in_place and win.flat_points() % V != 0
    shapes = {(t, tail and (t == rest or not rest)) for t in {T, rest} - {0}} | ({(T, False)} if full else set())
    # tiles of R output channels, and of one for the channels left over (fewer than R
    # at the end of a range: each channel's sums are the same in either, and R-1 tile
    # shapes less to compile)
    tiles = {(r, t, masked): _emit_tile(module, f"{name}_t{r}x{t}{'m' * masked}", win, V, r, t, epilogue, masked)
             for r in sorted({1, R}) for t, masked in shapes}
    blocks = b.sdiv(b.sub(hi, lo), i64(R))
    with _loop(b, i64(0), blocks, "blk") as j:
        _row_tiles(b, tiles, R, T, full, rest, tail, V, ptrs, b.add(lo, b.mul(j, i64(R))))
    with _loop(b, b.add(lo, b.mul(blocks, i64(R))), hi, "left") as co:
        _row_tiles(b, tiles, 1, T, full, rest, tail, V, ptrs, co)
    b.ret_void()
    return fn


def _pointer_attributes(fn, operands=0):
    """x and w are read only, y written only; y is not marked so where an epilogue
    operand (a residual, possibly y's own memory at the same points) is read."""
    for k in range(2 if operands else 3):
        fn.args[k].add_attribute("noalias")


def _row_tiles(b, tiles, r, T, full, rest, tail, V, ptrs, co0):
    """Every tile of r output channels from co0: `full` tiles of T vectors, then one of
    `rest` vectors; with `tail`, the tile holding the last vector is the masked one."""
    last_full = tail and not rest
    with _loop(b, i64(0), i64(full - last_full), "tile") as q:
        b.call(tiles[(r, T, False)], [*ptrs, co0, b.mul(q, i64(T * V))])
    if last_full:
        b.call(tiles[(r, T, True)], [*ptrs, co0, i64((full - 1) * T * V)])
    if rest:
        b.call(tiles[(r, rest, tail)], [*ptrs, co0, i64(full * T * V)])


class _loop:
    """for (i = lo; i < hi; i++) on a plain IRBuilder (the core has no FnBuilder)."""

    def __init__(self, b, lo, hi, name):
        self.b, self.lo, self.hi, self.name = b, lo, hi, name

    def __enter__(self):
        b = self.b
        fn = b.function
        self.pre = b.block
        self.head = fn.append_basic_block(self.name + "_head")
        body = fn.append_basic_block(self.name + "_body")
        self.end = fn.append_basic_block(self.name + "_end")
        b.branch(self.head)
        b.position_at_end(self.head)
        self.i = b.phi(I64, name=self.name)
        self.i.add_incoming(self.lo, self.pre)
        b.cbranch(b.icmp_signed("<", self.i, self.hi), body, self.end)
        b.position_at_end(body)
        return self.i

    def __exit__(self, *exc):
        b = self.b
        self.i.add_incoming(b.add(self.i, i64(1), flags=["nsw", "nuw"]), b.block)
        b.branch(self.head)
        b.position_at_end(self.end)
        return False


def _fma(module, t):
    return intrinsic(module, f"llvm.fma.v{t.count}f32", t, [t, t, t])


def _emit_tile(module, name, win, V, R, T, epilogue=None, tail=False):
    """`void tile(x, w, y, operands..., co0, q0)`: output channels [co0, co0+R) at
    flattened points [q0, q0 + T*V): accumulate over channels and taps, then apply the
    epilogue (if any) and store (compacted). With `tail`, the last vector's loads are
    masked to the flattened points (an in-place window's x has no slack)."""
    vt = ir.VectorType(F32, V)
    n_ops = len(epilogue.operands) if epilogue else 0
    fn = ir.Function(module, ir.FunctionType(VOID, [F32P] * (3 + n_ops) + [I64, I64]), name)
    fn.linkage = "internal"
    _pointer_attributes(fn, n_ops)
    x, w, y, *operands = fn.args[:3 + n_ops]
    co0, q0 = fn.args[3 + n_ops:]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fma = _fma(module, vt)
    K = win.C * win.KH * win.KW
    wrow = b.gep(w, [b.mul(co0, i64(K))])
    xq = b.gep(x, [q0])
    last = _lanes_before(b, b.add(q0, i64((T - 1) * V)), win.flat_points(), V) if tail else None
    zero = ir.Constant(vt, [0.0] * V)
    pre = b.block
    loop = fn.append_basic_block("ci")
    done = fn.append_basic_block("store")
    b.branch(loop)
    b.position_at_end(loop)
    ci = b.phi(I64, "c")
    ci.add_incoming(i64(0), pre)
    acc = [[b.phi(vt, f"a{r}_{t}") for t in range(T)] for r in range(R)]
    for row in acc:
        for a in row:
            a.add_incoming(zero, pre)
    xc = b.gep(xq, [b.mul(ci, i64(win.channel_stride()))])
    wc = b.gep(wrow, [b.mul(ci, i64(win.KH * win.KW))])
    cur = [list(row) for row in acc]
    for tap, off in enumerate(win.tap_offsets()):
        xs = [_load_vector(b, b.gep(xc, [i64(off + t * V)]), vt, last if t == T - 1 else None) for t in range(T)]
        for r in range(R):
            splat = _splat(b, b.load(b.gep(wc, [i64(r * K + tap)])), vt)
            for t in range(T):
                cur[r][t] = b.call(fma, [xs[t], splat, cur[r][t]])
    nxt = b.add(ci, i64(1))
    for r in range(R):
        for t in range(T):
            acc[r][t].add_incoming(cur[r][t], b.block)
    ci.add_incoming(nxt, b.block)
    b.cbranch(b.icmp_signed("<", nxt, i64(win.C)), loop, done)
    b.position_at_end(done)
    for r in range(R):
        co = b.add(co0, i64(r))
        for t in range(T):
            whole = win.in_place and not (tail and t == T - 1)    # every lane a point of y
            _store_compacted(b, cur[r][t], y, co, b.add(q0, i64(t * V)), win, V, epilogue, operands, whole)
    b.ret_void()
    return fn


def _lanes_before(b, qs, end, V):
    """The mask of lanes qs + lane < end."""
    it = ir.VectorType(I64, V)
    return b.icmp_signed("<", b.add(_splat(b, qs, it), ir.Constant(it, list(range(V)))), _splat(b, i64(end), it))


def _load_vector(b, p, vt, mask=None):
    if mask is None:
        return b.load(b.bitcast(p, vt.as_pointer()), align=4)
    return masked_load(b, p, mask, vt)


def _store_compacted(b, v, y, co, qs, win, V, epilogue, operands, whole=False):
    """Store the vector of flattened points [qs, qs+V) of output channel co to NCHW
    (row oh of the plane -> row oh of y): one masked store per output row it spans (one
    for all where the plane has no dropped columns, Wq == OW; a plain store where
    `whole`, all its lanes points of y), each after the epilogue (if any) at those
    points."""
    vt = v.type
    store = intrinsic(b.module, f"llvm.masked.store.v{V}f32.p0v{V}f32", VOID, [vt, vt.as_pointer(), I32,
                                                                               ir.VectorType(I1, V)])
    rows = b.mul(co, i64(win.OH * win.OW))
    for start, live in ([(qs, None)] if whole else _segments(b, qs, win, V)):
        def at_point(p, start=start):
            return b.gep(p, [b.add(rows, start)])
        out = emit_tile_epilogue(b, epilogue, v, co, operands, at_point, live) if epilogue else v
        target = b.bitcast(at_point(y), vt.as_pointer())
        if live is None:
            b.store(out, target, align=4)
        else:
            b.call(store, [out, target, ir.Constant(I32, 4), live])


def _segments(b, qs, win, V):
    """Per output row the vector of flattened points [qs, qs+V) spans: (the compacted
    index of its lane 0, the mask of its lanes in that row)."""
    it = ir.VectorType(I64, V)
    mt = ir.VectorType(I1, V)
    if win.Wq == win.OW:
        return [(qs, _lanes_before(b, qs, win.flat_points(), V))]
    lane = b.add(_splat(b, qs, it), ir.Constant(it, list(range(V))))
    oh0 = b.sdiv(qs, i64(win.Wq))
    out = []
    for k in range((V - 1) // win.Wq + 2):
        oh = b.add(oh0, i64(k))
        start = b.mul(oh, i64(win.Wq))
        first = b.icmp_signed(">=", lane, _splat(b, start, it))
        last = b.icmp_signed("<", lane, _splat(b, b.add(start, i64(win.OW)), it))
        inside = b.and_(first, last)
        live = b.and_(inside, _splat(b, b.icmp_signed("<", oh, i64(win.OH)), mt))
        out.append((b.sub(qs, b.mul(oh, i64(win.Wq - win.OW))), live))
    return out


def compiled_core(win, vector_bits=None, epilogue=None):
    """`f(x, w, y, *operands, lo=0, hi=co)` (positional) on NumPy float32 arrays: the core for
    window `win` (vectors of `vector_bits`, default the host's) over output channels
    [lo, hi), with `epilogue` (a conv_epilogue.TileEpilogue; `operands` its operands'
    arrays, in order), compiled on its own (runtime/conv_choice.py times it; the tests
    check it)."""
    import ctypes

    from . import target
    module = ir.Module(name="conv_direct")
    module.triple = target.triple()
    module.data_layout = target.data_layout()
    fn = emit_direct_core(module, "nngraph_conv_direct", win, vector_bits or host_facts().vector_bits, epilogue)
    fn.linkage = "external"
    engine = target.mcjit_engine(target.emit_object(target.optimize(str(module))))
    ptr = ctypes.POINTER(ctypes.c_float)
    n_ops = len(epilogue.operands) if epilogue else 0
    core = ctypes.CFUNCTYPE(None, *[ptr] * (3 + n_ops), ctypes.c_int64, ctypes.c_int64)(
        engine.get_function_address("nngraph_conv_direct"))

    def call(x, w, y, *args):
        co = y.shape[0]
        operands, (lo, hi) = args[:n_ops], (tuple(args[n_ops:]) + (0, co))[:2]
        _check_arrays(win, epilogue, co, x, w, y, operands)
        if not 0 <= lo <= hi <= co:
            raise ValueError(f"direct convolution: output channels [{lo}, {hi}) outside [0, {co})")
        core(*(a.ctypes.data_as(ptr) for a in (x, w, y, *operands)), lo, hi)
    call.engine = engine        # the code lives as long as the call
    return call


def _check_arrays(win, epilogue, co, x, w, y, operands):
    """compiled_core's arrays: C-contiguous float32 of the sizes the core reads and
    writes (an epilogue's row operand: co elements, a point operand: y's)."""
    sizes = [("x", win.elements()), ("w", co * win.C * win.KH * win.KW), ("y", co * win.OH * win.OW)]
    kinds = [op[1] for op in epilogue.operands] if epilogue else []
    if len(operands) != len(kinds):
        raise ValueError(f"direct convolution: the epilogue reads {len(kinds)} operands, got {len(operands)}")
    sizes += [(f"epilogue operand {k} ({kind})", co if kind == "row" else co * win.OH * win.OW)
              for k, kind in enumerate(kinds)]
    for (what, n), a in zip(sizes, (x, w, y, *operands)):
        if a.dtype != np.float32 or not a.flags.c_contiguous or a.size != n:
            raise ValueError(f"direct convolution: {what} must be a C-contiguous float32 array of {n} "
                             f"elements, got {a.dtype} {a.shape}")
