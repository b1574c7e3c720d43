"""Pooling (passes/lower/registry.py rules): one reduce stage over the window (max,
or a sum of x / divisor); the selection and the gradients use an argmax stage (first
maximum in row-major window order, the argmax rule of nngraph/semantics.py) and
gathers over the windows that cover a point. Windows of up to UNROLL_TAPS taps are
written out (reduce stages over an empty inner domain: the output row is the
innermost loop). max_pool2d_grad whose windows tile the input (stride = kernel, no
padding, nothing left over) is one map kernel over the windows: first maximum found
in the body, the cotangent stored at it and zeros at the window's other taps.

Results of the last reduce stage are registered like a reduction's, so elementwise
consumers join these kernels as later stages.
"""
from __future__ import annotations

from nngraph.semantics import lowest
from nngraph.types import TensorType, is_float

from ..program import Store
from .registry import lowering
from .window import UNROLL_TAPS, ceil_div, const, in_range, masked_value, range_mask


def _window(b, geo_pool, vh, vw, vi, vj):
    """Input coordinates of tap (i, j) of output window (oh, ow), and whether it is real."""
    (sh, sw), (pt, pl), (H, W) = geo_pool["stride"], geo_pool["pad"], geo_pool["hw"]
    hh = b.isub(b.iadd(b.imul(vh, b.iconst(sh)), vi), b.iconst(pt))
    ww = b.isub(b.iadd(b.imul(vw, b.iconst(sw)), vj), b.iconst(pl))
    return hh, ww, b.land(in_range(b, hh, H), in_range(b, ww, W))


def _tap(b, geo, vh, vw, i, j):
    """_window for a tap (i, j) known when lowering: masks that always hold are dropped."""
    (sh, sw), (pt, pl), (H, W), (OH, OW) = geo["stride"], geo["pad"], geo["hw"], geo["out_hw"]
    hh = b.isub(b.iadd(b.imul(vh, b.iconst(sh)), b.iconst(i)), b.iconst(pt))
    ww = b.isub(b.iadd(b.imul(vw, b.iconst(sw)), b.iconst(j)), b.iconst(pl))
    h_hi = (OH - 1) * sh + i - pt if isinstance(OH, int) else None
    w_hi = (OW - 1) * sw + j - pl if isinstance(OW, int) else None
    return hh, ww, b.land(range_mask(b, hh, i - pt, h_hi, H), range_mask(b, ww, j - pl, w_hi, W))


def _pool_geo(n, x_shape, out_hw):
    a = n.attrs
    (pt, _), (pl, _) = a["padding"]
    return {"stride": a["stride"], "pad": (pt, pl), "hw": tuple(x_shape[2:]), "kernel": a["kernel"],
            "out_hw": tuple(out_hw)}


def _unrolled(geo):
    kh, kw = geo["kernel"]
    return kh * kw <= UNROLL_TAPS


def _divisor(b, n, geo, vh, vw, dtype):
    kh, kw = geo["kernel"]
    if n.attrs.get("count_include_pad", True):
        return const(b, kh * kw, dtype)
    (sh, sw), (pt, pl), (H, W) = geo["stride"], geo["pad"], geo["hw"]
    h0 = b.isub(b.imul(vh, b.iconst(sh)), b.iconst(pt))
    w0 = b.isub(b.imul(vw, b.iconst(sw)), b.iconst(pl))
    rows = b.isub(b.emit("minimum", (b.iadd(h0, b.iconst(kh)), b.iconst(H)), "int64"),
                  b.emit("maximum", (h0, b.iconst(0)), "int64"))
    cols = b.isub(b.emit("minimum", (b.iadd(w0, b.iconst(kw)), b.iconst(W)), "int64"),
                  b.emit("maximum", (w0, b.iconst(0)), "int64"))
    return b.cast(b.imul(rows, cols), dtype)


def _argmax_better(b, v, best, isf):
    """Whether tap value v, met later in row-major window order, replaces the best so
    far: the lowering's spelling of the argmax rule of nngraph/semantics.py (only a
    greater value wins, so the first maximum stays; a NaN beats a number and the first
    NaN stays)."""
    better = b.emit("greater", (v, best), "bool")
    if isf:
        better = b.emit("logical_or", (better, b.land(b.emit("not_equal", (v, v), "bool"),
                                                     b.emit("equal", (best, best), "bool"))), "bool")
    return better


def _first_max(em, x, geo, vn, vc, vh, vw):
    """The window's first maximum, taps written out in row-major order: (value, tap
    number), by the argmax rule of nngraph/semantics.py (a larger value, or the first NaN)."""
    b = em.body
    kh, kw = geo["kernel"]
    isf = is_float(x.dtype)
    best = pos = None
    for i in range(kh):
        for j in range(kw):
            hh, ww, ok = _tap(b, geo, vh, vw, i, j)
            v = masked_value(em, x, (vn, vc, hh, ww), ok, x.dtype, lowest(x.dtype))
            t = b.iconst(i * kw + j)
            if best is None:
                best, pos = v, t
                continue
            better = _argmax_better(b, v, best, isf)
            best = b.emit("where", (better, v, best), x.dtype)
            pos = b.emit("where", (better, t, pos), "int64")
    return best, pos


def _argmax_stage(ctx, g, x, geo):
    kh, kw = geo["kernel"]
    if _unrolled(geo):
        st = g.new_stage((), "reduce")
        b = st.body
        vn, vc, vh, vw = (b.idx(k) for k in range(4))
        best, pos = _first_max(st.emitter, x, geo, vn, vc, vh, vw)
        st.reduce.append(("argmax", best, pos))
        ctx.note_reads(g, st.emitter.loads)
        return st
    st = g.new_stage((kh, kw), "reduce")
    b = st.body
    vn, vc, vh, vw, vi, vj = (b.idx(k) for k in range(6))
    hh, ww, ok = _window(b, geo, vh, vw, vi, vj)
    v = masked_value(st.emitter, x, (vn, vc, hh, ww), ok, x.dtype, lowest(x.dtype))
    st.reduce.append(("argmax", v, b.iadd(b.imul(vi, b.iconst(kw)), vj)))
    ctx.note_reads(g, st.emitter.loads)
    return st


@lowering("max_pool2d", "avg_pool2d")
def lower_pool(ctx, n):
    (x,) = n.inputs
    geo = _pool_geo(n, x.shape, n.shape[2:])
    kh, kw = geo["kernel"]
    g = ctx.new_group(tuple(n.shape))
    if _unrolled(geo):
        # the taps written out: the innermost loop is the output row, which vectorises
        st = g.new_stage((), "reduce")
        b = st.body
        vn, vc, vh, vw = (b.idx(k) for k in range(4))
        mx = n.op == "max_pool2d"
        total = None
        for i in range(kh):
            for j in range(kw):
                hh, ww, ok = _tap(b, geo, vh, vw, i, j)
                v = masked_value(st.emitter, x, (vn, vc, hh, ww), ok, n.dtype, lowest(n.dtype) if mx else 0)
                total = v if total is None else b.emit("maximum" if mx else "add", (total, v), n.dtype)
        if mx:
            st.reduce.append(("max", total))
        else:
            st.reduce.append(("sum", b.emit("div", (total, _divisor(b, n, geo, vh, vw, n.dtype)), n.dtype)))
        ctx.register_result(g, n, 0, 0)
        ctx.note_reads(g, st.emitter.loads)
        return
    st = g.new_stage((kh, kw), "reduce")
    b = st.body
    vn, vc, vh, vw, vi, vj = (b.idx(k) for k in range(6))
    hh, ww, ok = _window(b, geo, vh, vw, vi, vj)
    if n.op == "max_pool2d":
        v = masked_value(st.emitter, x, (vn, vc, hh, ww), ok, n.dtype, lowest(n.dtype))
        st.reduce.append(("max", v))
    else:
        v = masked_value(st.emitter, x, (vn, vc, hh, ww), ok, n.dtype, 0)
        st.reduce.append(("sum", b.emit("div", (v, _divisor(b, n, geo, vh, vw, n.dtype)), n.dtype)))
    ctx.register_result(g, n, 0, 0)
    ctx.note_reads(g, st.emitter.loads)


@lowering("max_pool2d_select")
def lower_max_select(ctx, n):
    x, h = n.inputs
    geo = _pool_geo(n, x.shape, n.shape[2:])
    kh, kw = geo["kernel"]
    g = ctx.new_group(tuple(n.shape))
    _argmax_stage(ctx, g, x, geo)
    st = g.new_stage((), "map")
    b = st.body
    vn, vc, vh, vw = (b.idx(k) for k in range(4))
    pos = b.emit("result", (), "int64", stage=0, slot=0)
    hh, ww, ok = _window(b, geo, vh, vw, b.ifloordiv(pos, b.iconst(kw)), b.imod(pos, b.iconst(kw)))
    v = masked_value(st.emitter, h, (vn, vc, hh, ww), ok, n.dtype, 0)
    for bb in ctx.store_bufs[id(n)]:
        st.stores.append(Store(bb, (vn, vc, vh, vw), v))
    g.members.append(n)
    ctx.note_writes(g, ctx.store_bufs[id(n)])
    ctx.note_reads(g, st.emitter.loads)


def _gather_windows(b, geo, vh, vw, va, vb):
    """Candidate output window (oh, ow) number (a, b) covering input point (h, w), the
    tap position inside it, and whether it exists."""
    (sh, sw), (pt, pl) = geo["stride"], geo["pad"]
    kh, kw = geo["kernel"]
    hp, wp = b.iadd(vh, b.iconst(pt)), b.iadd(vw, b.iconst(pl))
    oh = b.isub(b.ifloordiv(hp, b.iconst(sh)), va)
    ow = b.isub(b.ifloordiv(wp, b.iconst(sw)), vb)
    ti, tj = b.isub(hp, b.imul(oh, b.iconst(sh))), b.isub(wp, b.imul(ow, b.iconst(sw)))
    ok = b.land(b.land(in_range(b, oh, geo["out_hw"][0]), in_range(b, ow, geo["out_hw"][1])),
                b.land(b.emit("less", (ti, b.iconst(kh)), "bool"), b.emit("less", (tj, b.iconst(kw)), "bool")))
    return oh, ow, ti, tj, ok


def _tiles(geo):
    """Do the windows tile the input exactly (stride = kernel, no padding, nothing left
    over)? Then every input point lies in exactly one window."""
    (kh, kw), (sh, sw), (pt, pl), (H, W), (OH, OW) = (geo["kernel"], geo["stride"], geo["pad"], geo["hw"],
                                                      geo["out_hw"])
    return ((kh, kw) == (sh, sw) and (pt, pl) == (0, 0) and all(isinstance(v, int) for v in (H, W, OH, OW))
            and H == OH * kh and W == OW * kw)


def _max_pool_grad_tiled(ctx, n, x, gy, geo):
    """max_pool2d_grad when the windows tile the input: one map kernel over the windows
    finds each window's first maximum (taps written out) and writes the window's
    cotangent there and zeros at its other taps, so no argmax buffer, no gather."""
    kh, kw = geo["kernel"]
    dt = n.dtype
    g = ctx.new_group(tuple(gy.shape))
    st = g.new_stage((), "map")
    b, em = st.body, st.emitter
    vn, vc, vh, vw = (b.idx(k) for k in range(4))
    _, pos = _first_max(em, x, geo, vn, vc, vh, vw)
    v = b.cast(em.value(gy, (vn, vc, vh, vw)), dt)
    zero = const(b, 0, dt)
    for i in range(kh):
        for j in range(kw):
            hh, ww, _ = _tap(b, geo, vh, vw, i, j)
            out = b.emit("where", (b.emit("equal", (pos, b.iconst(i * kw + j)), "bool"), v, zero), dt)
            for bb in ctx.store_bufs[id(n)]:
                st.stores.append(Store(bb, (vn, vc, hh, ww), out))
    g.members.append(n)
    ctx.note_writes(g, ctx.store_bufs[id(n)])
    ctx.note_reads(g, em.loads)


@lowering("max_pool2d_grad", "avg_pool2d_grad")
def lower_pool_grad(ctx, n):
    if n.op == "max_pool2d_grad":
        x, gy = n.inputs
        geo = _pool_geo(n, x.shape, gy.shape[2:])
        if _tiles(geo) and _unrolled(geo):
            _max_pool_grad_tiled(ctx, n, x, gy, geo)
            return
        # kernel A: the first maximum's position in every window
        pos_buf = ctx.add_buffer("t_argmax", TensorType("int64", tuple(gy.shape)), "temp", n)
        ga = ctx.new_group(tuple(gy.shape))
        _argmax_stage(ctx, ga, x, geo)
        sa = ga.new_stage((), "map")
        sa.stores.append(Store(pos_buf, tuple(sa.body.idx(k) for k in range(4)),
                               sa.body.emit("result", (), "int64", stage=0, slot=0)))
        ga.members.append(n)
        ctx.note_writes(ga, {pos_buf})
    else:
        (gy,) = n.inputs
        geo = _pool_geo(n, n.shape, gy.shape[2:])
    kh, kw = geo["kernel"]
    (sh, sw) = geo["stride"]
    g = ctx.new_group(tuple(n.shape))
    na, nb = ceil_div(kh, sh), ceil_div(kw, sw)
    unroll = na * nb <= UNROLL_TAPS
    st = g.new_stage((() if unroll else (na, nb)), "reduce")
    b = st.body
    vn, vc, vh, vw = (b.idx(k) for k in range(4))
    taps = [(b.iconst(a_), b.iconst(b_)) for a_ in range(na) for b_ in range(nb)] if unroll else \
        [(b.idx(4), b.idx(5))]
    total = None
    for va, vb in taps:
        oh, ow, ti, tj, ok = _gather_windows(b, geo, vh, vw, va, vb)
        v = b.cast(st.emitter.value(gy, (vn, vc, oh, ow), ok), n.dtype)
        if n.op == "max_pool2d_grad":
            p = st.emitter.load(pos_buf, (vn, vc, oh, ow), ok)
            ok = b.land(ok, b.emit("equal", (p, b.iadd(b.imul(ti, b.iconst(kw)), tj)), "bool"))
        else:
            v = b.emit("div", (v, _divisor(b, n, geo, oh, ow, n.dtype)), n.dtype)
        v = b.emit("where", (ok, v, const(b, 0, n.dtype)), n.dtype)
        total = v if total is None else b.emit("add", (total, v), n.dtype)
    st.reduce.append(("sum", total))
    ctx.register_result(g, n, 0, 0)
    ctx.note_reads(g, st.emitter.loads)
