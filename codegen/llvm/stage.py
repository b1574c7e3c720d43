"""Stage emission shared by every LLVM loop function (codegen/llvm/kernel.py: loop
kernels, partials and finishes; codegen/llvm/column_reduce.py: column reductions):
a stage's accumulators, its SSA body as LLVM instructions (loads, scalar ops through
codegen/llvm/scalar.py, the counter-based uniform), accumulator updates and stores.
"""
from __future__ import annotations

from contextlib import contextmanager

import llvmlite.ir as ir

from nngraph.ops import random
from nngraph.types import is_float
from passes.program import Stage

from . import scalar
from .blocked_sum import BlockedSums, blocked_loop
from .irtypes import F32, F64, I1, I8, I32, I64, call_intrinsic, const, i64, intrinsic, suffix, value_type
from .loops import FnBuilder
from .target import has_feature

REDUCE_FLAGS = ("reassoc", "contract")


def emit_point(fb, oidx, stages, acc_buffer):
    results = {}
    for s_no, st in enumerate(stages):
        results[s_no] = emit_stage(fb, oidx, st, s_no, results, acc_buffer)


def emit_stage(fb: FnBuilder, oidx, st: Stage, s_no, results, acc_buffer, first=None):
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
        elif kind in ("max", "min") and is_float(dt):
            ia = fb.alloca(_flag_type(dt), name="acc_nan")       # whether a NaN was met (accumulate)
            b.store(ir.Constant(_flag_type(dt), 0), ia)
        accs.append((kind, dt, a, ia))
    sums = BlockedSums(fb, accs if st.inner else [])   # no loop: nothing to block
    with _inner_loops(fb, st.inner, f"s{s_no}_", first, sums) as iidx:
        vals, dts = emit_body(fb, st.body, list(oidx) + list(iidx), results, acc_buffer)
        for (kind, dt, a, ia), red in zip(accs, st.reduce):
            accumulate(fb, kind, dt, a, ia, vals[red[1]], vals[red[2]] if len(red) > 2 else None, dts, red)
        emit_stores(fb, st.stores, vals, dts)
    if sums:
        sums.finish()
    for kind, dt, a, ia in accs:
        if ia is not None and kind != "argmax":       # a float max/min: NaN if one was met
            seen = b.icmp_signed("<", b.load(ia), ir.Constant(_flag_type(dt), 0))
            b.store(b.select(seen, const(dt, float("nan")), b.load(a)), a)
    return accs


@contextmanager
def _inner_loops(fb, inner, prefix, first, sums):
    """The stage's inner loops; with float sums, the innermost runs in blocks (blocked_sum.py)."""
    if not sums or not inner:
        with fb.nest(inner, prefix, first=first) as iidx:
            yield iidx
        return
    with fb.nest(inner[:-1], prefix, first=first) as idx:
        d = len(inner) - 1
        lo, hi = first if (d == 0 and first is not None) else (i64(0), fb.size(inner[-1]))
        with contextmanager(blocked_loop)(fb, lo, hi, sums, f"{prefix}{d}") as i:
            yield list(idx) + [i]


def emit_stores(fb, stores, vals, dts):
    b = fb.b
    for store in stores:
        buf = fb.program.buffers[store.buffer]
        index = [as_i64(b, vals[k], dts[k]) for k in store.index]
        v = scalar.convert(b, vals[store.value], dts[store.value], buf.dtype)
        ptr = fb.element_ptr(store.buffer, index)
        if store.accumulate:   # scatter-add: points of one thread run in order, threads own disjoint rows
            v = scalar.emit(b, "add", [b.load(ptr), v], [buf.dtype, buf.dtype], buf.dtype)
        if buf.dtype == "bool":
            v = b.zext(v, I8)
        b.store(v, ptr)


def argmax_better(b, v, cur, dt):
    """Whether v, met later in scan order, replaces the running argmax value cur: this
    backend's spelling of the argmax rule of nngraph/semantics.py. Only a greater value
    wins, so the first maximum stays; for floats a NaN beats a number and, once held,
    no later NaN replaces it (the first NaN wins); for bool True beats False."""
    if is_float(dt):
        return b.or_(b.fcmp_ordered(">", v, cur),
                     b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", cur, cur)))
    if dt == "bool":
        return b.and_(v, b.xor(cur, ir.Constant(I1, 1)))
    return b.icmp_signed(">", v, cur)


def accumulate(fb, kind, dt, a, ia, v, index, dts, red):
    b = fb.b
    isf = is_float(dt)
    cur = b.load(a)
    if kind == "sum":
        if isf:
            new = b.fadd(cur, v, flags=REDUCE_FLAGS)
        elif dt == "bool":
            new = b.or_(cur, v)
        else:
            new = b.add(cur, v)
    elif kind in ("max", "min"):
        if isf and ia is not None:
            new = _max_apart_from_nans(b, kind, cur, v, ia)
        elif isf:
            # NaN-propagating; `nsz`: -0.0 and +0.0 unordered (nngraph/semantics.py), which
            # spares x86 two of five instructions per vector
            base = "maximum" if kind == "max" else "minimum"
            fn = intrinsic(b.module, f"llvm.{base}.{suffix(cur.type)}", cur.type, [cur.type, cur.type])
            new = b.call(fn, [cur, v], fastmath=("nsz",))
        elif dt == "bool":
            new = b.or_(cur, v) if kind == "max" else b.and_(cur, v)
        else:
            new = b.select(b.icmp_signed(">" if kind == "max" else "<", v, cur), v, cur)
    elif kind == "argmax":
        better = argmax_better(b, v, cur, dt)
        new = b.select(better, v, cur)
        ix = as_i64(b, index, dts[red[2]])
        b.store(b.select(better, ix, b.load(ia)), ia)
    else:
        raise NotImplementedError(f"reduction {kind!r}")
    b.store(new, a)


def _flag_type(dt):
    """The NaN flag of a float max/min: an integer as wide as the float, so that a
    vector of flags is the vector compare's own mask (AVX2 packs a vector of i1)."""
    return I64 if value_type(dt) == F64 else I32


def _max_apart_from_nans(b, kind, cur, v, nan_seen):
    """The float max (min) of cur and v for values that are not NaN, with v's NaN-ness
    noted in `nan_seen` (negative once a NaN was met; emit_stage then makes the result NaN). With `nnan`
    the max is one vmaxps: a NaN-propagating max (llvm.maximum) is also a compare and
    a blend on the accumulator, whose chain of two dependent instructions per vector
    made the row maximum of softmax a fifth of its time; the NaN test here is off the
    chain. A NaN v makes `new` poison, which only the select of NaN uses."""
    base = "maxnum" if kind == "max" else "minnum"
    fn = intrinsic(b.module, f"llvm.{base}.{suffix(cur.type)}", cur.type, [cur.type, cur.type])
    flag = b.sext(b.fcmp_unordered("uno", v, v), nan_seen.type.pointee)
    if has_feature("avx512f"):      # LLVM keeps or-ed flags in mask registers (korw)
        b.store(b.or_(b.load(nan_seen), flag), nan_seen)
    else:                           # an or would be narrowed to a vector of i1, packed per vector
        b.store(call_intrinsic(b, "smin", b.load(nan_seen), flag), nan_seen)
    return b.call(fn, [cur, v], fastmath=("nnan", "nsz"))


def as_i64(b, v, dt):
    if dt == "int64":
        return v
    return scalar.convert(b, v, dt, "int64")


def emit_body(fb: FnBuilder, body, idx, results, acc_buffer):
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
    index = [as_i64(b, vals[a], dts[a]) for a in ins.args[:nd]]
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


def _i32(v: int):
    """A uint32 constant as LLVM's (signed) i32."""
    return ir.Constant(I32, v - 2**32 if v >= 2**31 else v)


def _hash32(b, x):
    for shift, mul in random.HASH_STEPS:
        x = b.xor(x, b.lshr(x, _i32(shift)))
        if mul is not None:
            x = b.mul(x, _i32(mul))
    return x


def _uniform(b, ins, vals, dts):
    """nngraph/ops/random.py, bit for bit: key from (seed, counter), hash of index^key."""
    counter, index = ins.args[0], ins.args[1]
    cv = vals[counter]
    cv = b.trunc(cv, I32) if cv.type.width > 32 else (b.zext(cv, I32) if cv.type.width < 32 else cv)
    seed_mul = (int(ins.attr("seed")) & 0xFFFFFFFF) * random.SEED_MUL & 0xFFFFFFFF
    key = _hash32(b, b.add(_i32(seed_mul), b.mul(cv, _i32(random.COUNTER_MUL))))
    iv = vals[index]
    iv = b.trunc(iv, I32) if iv.type.width > 32 else iv
    h = _hash32(b, b.xor(iv, key))
    u = b.fmul(b.uitofp(b.lshr(h, _i32(random.MANTISSA_SHIFT)), F32), ir.Constant(F32, random.UNIT))
    return scalar.convert(b, u, "float32", ins.dtype)
