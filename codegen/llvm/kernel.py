"""LoopKernel -> one LLVM function `void k(bufs, sizes, lo, hi)` running the outer
domain's first axis over [lo, hi) (so the entry point can split it across threads).

At each outer point the stages run in order: nested inner loops, the SSA body,
then stores (map stage) or accumulator updates (reduce stage). Loads and stores
are plain row-major address arithmetic on loop indices, so the innermost loop is
unit-stride where the data is and LLVM's loop vectoriser widens it. Float sum
accumulators carry `reassoc contract` (only those adds), which lets reductions
vectorise too.
"""
from __future__ import annotations

import llvmlite.ir as ir

from passes.program import Stage

from . import scalar
from .coalesce import coalesce
from .irtypes import F32, I1, I8, I8P, I32, I64, call_intrinsic, const, i64, value_type
from .loops import FnBuilder

REDUCE_FLAGS = ("reassoc", "contract")


def emit_loop_function(module, name, program, symbols, outer, stages, acc_buffer=None):
    """Build the function `void f(bufs, sizes, lo, hi, extra)` for one loop nest (a
    LoopKernel, or a matmul epilogue whose `acc` reads `acc_buffer` at the outer
    index); [lo, hi) bounds the first outer axis, `extra` is unused."""
    from .column_reduce import emit_column_reduction, is_column_reduction
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=symbols)
    lo, hi, _ = fb.args
    outer, stages = coalesce(program, outer, stages)   # short rows merged into longer ones
    if acc_buffer is None and is_column_reduction(program, outer, stages):
        emit_column_reduction(fb, lo, hi, stages)
    elif outer:
        with fb.nest(outer, "o", first=(lo, hi)) as oidx:
            _emit_point(fb, oidx, stages, acc_buffer)
    else:
        _emit_point(fb, [], stages, acc_buffer)
    fb.b.ret_void()
    return fb.finish()


SPLITTABLE = ("sum", "max", "min")


def can_split_reduction(outer, stages) -> bool:
    """A kernel with no outer domain whose first stage is a sum/max/min reduction:
    its first inner axis can be cut in two, each half accumulating its own partial."""
    return (not outer and bool(stages) and bool(stages[0].reduce) and bool(stages[0].inner)
            and all(r[0] in SPLITTABLE for r in stages[0].reduce))


def partial_type(stage):
    return ir.LiteralStructType([value_type(stage.body[r[1]].dtype) for r in stage.reduce])


def emit_partial_function(module, name, program, symbols, stage):
    """`void f(bufs, sizes, lo, hi, partial)`: stage 0 over first-inner-axis range
    [lo, hi), its accumulators written to *partial."""
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=symbols)
    lo, hi, out = fb.args
    accs = _emit_stage(fb, [], stage, 0, {}, None, first=(lo, hi))
    dst = fb.b.bitcast(out, partial_type(stage).as_pointer())
    for j, (kind, dt, a, ia) in enumerate(accs):
        fb.b.store(fb.b.load(a), fb.b.gep(dst, [ir.Constant(I32, 0), ir.Constant(I32, j)]))
    fb.b.ret_void()
    return fb.finish()


def emit_finish_function(module, name, program, symbols, stages, n_parts):
    """`void f(bufs, sizes, lo, hi, partials)`: combine n_parts partials of stage 0,
    then run the later stages with them as stage 0's results."""
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=symbols)
    b = fb.b
    st = stages[0]
    pt = partial_type(st)
    parts = b.bitcast(fb.args[2], pt.as_pointer())
    accs = []
    for j, red in enumerate(st.reduce):
        kind, dt = red[0], st.body[red[1]].dtype
        a = fb.alloca(value_type(dt), name=f"acc_{kind}")
        b.store(scalar.identity(kind, dt), a)
        for q in range(n_parts):
            v = b.load(b.gep(parts, [i64(q), ir.Constant(I32, j)]))
            _accumulate(fb, kind, dt, a, None, v, None, None, red)
        accs.append((kind, dt, a, None))
    results = {0: accs}
    for s_no, stg in enumerate(stages[1:], start=1):
        results[s_no] = _emit_stage(fb, [], stg, s_no, results, None)
    b.ret_void()
    return fb.finish()


def _emit_point(fb, oidx, stages, acc_buffer):
    results = {}
    for s_no, st in enumerate(stages):
        results[s_no] = _emit_stage(fb, oidx, st, s_no, results, acc_buffer)


def _emit_stage(fb: FnBuilder, oidx, st: Stage, s_no, results, acc_buffer, first=None):
    b = fb.b
    accs = []
    for red in st.reduce:
        kind, v = red[0], red[1]
        dt = st.body[v].dtype
        a = fb.alloca(value_type(dt), name=f"acc_{kind}")
        b.store(scalar.identity(kind, dt), a)
        ia = None
        if kind == "argmax":
            ia = fb.alloca(I64, name="acc_idx")
            b.store(i64(0), ia)
        accs.append((kind, dt, a, ia))
    with fb.nest(st.inner, f"s{s_no}_", first=first) as iidx:
        vals, dts = _emit_body(fb, st.body, list(oidx) + list(iidx), results, acc_buffer)
        for (kind, dt, a, ia), red in zip(accs, st.reduce):
            _accumulate(fb, kind, dt, a, ia, vals[red[1]], vals[red[2]] if len(red) > 2 else None, dts, red)
        _emit_stores(fb, st.stores, vals, dts)
    return accs


def _emit_stores(fb, stores, vals, dts):
    b = fb.b
    for store in stores:
        buf = fb.program.buffers[store.buffer]
        index = [_as_i64(b, vals[k], dts[k]) for k in store.index]
        v = scalar.convert(b, vals[store.value], dts[store.value], buf.dtype)
        ptr = fb.element_ptr(store.buffer, index)
        if store.accumulate:   # scatter-add: points of one thread run in order, threads own disjoint rows
            v = scalar.emit(b, "add", [b.load(ptr), v], [buf.dtype, buf.dtype], buf.dtype)
        if buf.dtype == "bool":
            v = b.zext(v, I8)
        b.store(v, ptr)


def _accumulate(fb, kind, dt, a, ia, v, index, dts, red):
    b = fb.b
    isf = dt in ("float32", "float64")
    cur = b.load(a)
    if kind == "sum":
        if isf:
            new = b.fadd(cur, v, flags=REDUCE_FLAGS)
        elif dt == "bool":
            new = b.or_(cur, v)
        else:
            new = b.add(cur, v)
    elif kind in ("max", "min"):
        if isf:
            new = call_intrinsic(b, "maximum" if kind == "max" else "minimum", cur, v)
        elif dt == "bool":
            new = b.or_(cur, v) if kind == "max" else b.and_(cur, v)
        else:
            new = b.select(b.icmp_signed(">" if kind == "max" else "<", v, cur), v, cur)
    elif kind == "argmax":
        if isf:   # first maximum; the first NaN wins, as np.argmax
            better = b.or_(b.fcmp_ordered(">", v, cur),
                           b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", cur, cur)))
        elif dt == "bool":
            better = b.and_(v, b.xor(cur, ir.Constant(I1, 1)))
        else:
            better = b.icmp_signed(">", v, cur)
        new = b.select(better, v, cur)
        ix = _as_i64(b, index, dts[red[2]])
        b.store(b.select(better, ix, b.load(ia)), ia)
    else:
        raise NotImplementedError(f"reduction {kind!r}")
    b.store(new, a)


def _as_i64(b, v, dt):
    if dt == "int64":
        return v
    return scalar.convert(b, v, dt, "int64")


def _emit_body(fb: FnBuilder, body, idx, results, acc_buffer):
    b = fb.b
    vals, dts = [], []
    for ins in body:
        op, dt = ins.op, ins.dtype
        if op == "idx":
            v = scalar.convert(b, idx[ins.attr("axis")], "int64", dt)
        elif op == "size":
            v = scalar.convert(b, fb.size(ins.attr("size")), "int64", dt)
        elif op == "const":
            v = const(dt, ins.attr("value"))
        elif op == "load":
            v = _load(fb, ins, vals, dts)
        elif op == "result":
            kind, rdt, a, ia = results[ins.attr("stage")][ins.attr("slot")]
            if kind == "argmax":
                v = scalar.convert(b, b.load(ia), "int64", dt)
            else:
                v = scalar.convert(b, b.load(a), rdt, dt)
        elif op == "acc":
            buf = fb.program.buffers[acc_buffer]
            v = _load_elem(fb, acc_buffer, idx[:len(buf.shape)])
            v = scalar.convert(b, v, buf.dtype, dt)
        elif op == "uniform":
            v = _uniform(b, ins, vals, dts)
        else:
            v = scalar.emit(b, op, [vals[a] for a in ins.args], [dts[a] for a in ins.args], dt, dict(ins.attrs))
        vals.append(v)
        dts.append(dt)
    return vals, dts


def _load_elem(fb, buf_id, index):
    b = fb.b
    buf = fb.program.buffers[buf_id]
    v = b.load(fb.element_ptr(buf_id, index))
    if buf.dtype == "bool":
        v = b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
    return v


def _load(fb, ins, vals, dts):
    b = fb.b
    buf = fb.program.buffers[ins.attr("buffer")]
    nd = len(buf.shape)
    index = [_as_i64(b, vals[a], dts[a]) for a in ins.args[:nd]]
    if ins.attr("masked"):
        m = scalar.convert(b, vals[ins.args[nd]], dts[ins.args[nd]], "bool")
        # the memory is touched only where the mask is on: a conditional block, which
        # the loop vectoriser turns into a masked (contiguous) vector load, where a
        # select of the address made it a gather
        pre = b.block
        then = fb.fn.append_basic_block("mload")
        join = fb.fn.append_basic_block("mjoin")
        b.cbranch(m, then, join)
        b.position_at_end(then)
        v = scalar.convert(b, _load_elem(fb, buf.id, index), buf.dtype, ins.dtype)
        then_end = b.block
        b.branch(join)
        b.position_at_end(join)
        phi = b.phi(v.type)
        phi.add_incoming(v, then_end)
        phi.add_incoming(const(ins.dtype, ins.attr("fill", 0)), pre)
        return phi
    return scalar.convert(b, _load_elem(fb, buf.id, index), buf.dtype, ins.dtype)


def _hash32(b, x):
    c = lambda v: ir.Constant(I32, v)  # noqa: E731
    x = b.xor(x, b.lshr(x, c(16)))
    x = b.mul(x, c(0x7FEB352D))
    x = b.xor(x, b.lshr(x, c(15)))
    x = b.mul(x, c(0x846CA68B - 2**32))
    return b.xor(x, b.lshr(x, c(16)))


def _uniform(b, ins, vals, dts):
    """nngraph/ops/random.py, bit for bit: key from (seed, counter), hash of index^key."""
    counter, index = ins.args[0], ins.args[1]
    cv = vals[counter]
    cv = b.trunc(cv, I32) if cv.type.width > 32 else (b.zext(cv, I32) if cv.type.width < 32 else cv)
    seed_mul = (int(ins.attr("seed")) & 0xFFFFFFFF) * 0x9E3779B9 & 0xFFFFFFFF
    seed_mul = seed_mul - 2**32 if seed_mul >= 2**31 else seed_mul
    key = _hash32(b, b.add(ir.Constant(I32, seed_mul), b.mul(cv, ir.Constant(I32, 0x85EBCA6B - 2**32))))
    iv = vals[index]
    iv = b.trunc(iv, I32) if iv.type.width > 32 else iv
    h = _hash32(b, b.xor(iv, key))
    u = b.fmul(b.uitofp(b.lshr(h, ir.Constant(I32, 8)), F32), ir.Constant(F32, 2.0 ** -24))
    return scalar.convert(b, u, "float32", ins.dtype)
