"""Convolutions, lowered to im2col + MatmulKernel (passes/lower/registry.py rules):

- conv2d: an im2col LoopKernel writes cols[N, G, Cg*KH*KW, OH*OW] (masked loads do
  the zero padding, masks that always hold are left out; x's producer is inlined
  into them), then one MatmulKernel
  w[G, Og, K] @ cols -> y viewed as [N, G, Og, OH*OW] (the same memory as NCHW y).
  Its epilogue takes bias + activation exactly as a matmul's does.
- conv2d_grad_input: a MatmulKernel wᵀ @ gy -> cols, then col2im as a gather
  reduction: each input point sums, over the KH x KW taps, the column entries that
  came from it (masked where the stride skips it or the window leaves the output).
  Up to UNROLL_TAPS taps the sum is written out in one point's body (a reduce stage
  over an empty inner domain), so the innermost loop is the input row: contiguous
  masked loads, vectorised; more taps keep an inner loop over them.
- conv2d_grad_filter: the forward conv's cols (the same buffer when the forward conv
  of the same x is in the graph, else its own im2col), a MatmulKernel batched over N,
  gy [Og, OH*OW] @ colsᵀ (trans_b), and a reduction over N that writes dw; the
  reduction's kernel takes the SGD step's epilogue like any reduction.

Results of the last reduce stage are registered like a reduction's, so elementwise
consumers join these kernels as later stages.
"""
from __future__ import annotations

from nngraph.types import TensorType

from ..program import MatmulKernel, Store
from .registry import lowering
from .window import UNROLL_TAPS, in_range, masked_value, range_mask


def _geometry(n, x_shape, w_shape, out_hw):
    a = n.attrs
    G = a["groups"]
    O, Cg, KH, KW = w_shape
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    return dict(G=G, O=O, Og=O // G, Cg=Cg, KH=KH, KW=KW, K=Cg * KH * KW, sh=sh, sw=sw, pt=pt, pl=pl,
                dh=dh, dw=dw, N=x_shape[0], H=x_shape[2], W=x_shape[3], OH=out_hw[0], OW=out_hw[1],
                P=out_hw[0] * out_hw[1])


def _im2col(ctx, n, x, geo, dtype):
    """cols[N, G, K, P]: x's windows, K = (c, i, j) and P = (oh, ow) row-major.
    The same windows of the same x are written once: the filter gradient reuses the
    forward conv's cols (the memory plan keeps them alive until their last reader)."""
    key = ("im2col", id(x), dtype) + tuple(sorted(geo.items()))
    return ctx.cached(key, lambda: _im2col_kernel(ctx, n, x, geo, dtype))


def _im2col_kernel(ctx, n, x, geo, dtype):
    """The loop runs over (N, G, K, OH, OW): the innermost axis steps along a row of x
    and of cols without a divide, so it vectorises."""
    N, G, K, P, OH, OW = geo["N"], geo["G"], geo["K"], geo["P"], geo["OH"], geo["OW"]
    cols = ctx.add_buffer("cols", TensorType(dtype, (N, G, K, P)), "temp", n)
    g = ctx.new_group((N, G, K, OH, OW))
    st = g.new_stage((), "map")
    b, em = st.body, st.emitter
    vn, vg, vk, oh, ow = (b.idx(a) for a in range(5))
    khw = geo["KH"] * geo["KW"]
    c = b.iadd(b.imul(vg, b.iconst(geo["Cg"])), b.ifloordiv(vk, b.iconst(khw)))
    i = b.imod(b.ifloordiv(vk, b.iconst(geo["KW"])), b.iconst(geo["KH"]))
    j = b.imod(vk, b.iconst(geo["KW"]))
    hh = b.isub(b.iadd(b.imul(oh, b.iconst(geo["sh"])), b.imul(i, b.iconst(geo["dh"]))), b.iconst(geo["pt"]))
    ww = b.isub(b.iadd(b.imul(ow, b.iconst(geo["sw"])), b.imul(j, b.iconst(geo["dw"]))), b.iconst(geo["pl"]))
    h_lo = -geo["pt"]
    h_hi = (OH - 1) * geo["sh"] + (geo["KH"] - 1) * geo["dh"] - geo["pt"] if isinstance(OH, int) else None
    w_lo = -geo["pl"]
    w_hi = (OW - 1) * geo["sw"] + (geo["KW"] - 1) * geo["dw"] - geo["pl"] if isinstance(OW, int) else None
    mask = b.land(range_mask(b, hh, h_lo, h_hi, geo["H"]), range_mask(b, ww, w_lo, w_hi, geo["W"]))
    v = masked_value(em, x, (vn, c, hh, ww), mask, dtype, 0)
    st.stores.append(Store(cols, (vn, vg, vk, b.iadd(b.imul(oh, b.iconst(OW)), ow)), v))
    g.members.append(n)
    ctx.note_reads(g, em.loads)
    ctx.note_writes(g, {cols})
    return cols


@lowering("conv2d")
def lower_conv2d(ctx, n):
    x, w = n.inputs
    geo = _geometry(n, x.shape, w.shape, n.shape[2:])
    dt = n.dtype
    N, G, Og, K, P = geo["N"], geo["G"], geo["Og"], geo["K"], geo["P"]
    cols = _im2col(ctx, n, x, geo, dt)
    wv = ctx.view(ctx.operand_buffer(w, dt), (G, Og, K))
    frontier = ctx.plan.epilogue.get(id(n), [n])
    stores, base = ctx.epilogue_output(n, frontier)
    out = ctx.view(base, (N, G, Og, P)) if base is not None else \
        ctx.add_buffer("t_conv", TensorType(dt, (N, G, Og, P)), "temp", n)
    kern = MatmulKernel("k_conv2d", wv, cols, out, (N, G), Og, P, K, source=f"conv2d {n.type}@{n.where}")
    g = ctx.new_group((N, G, Og, P), kern)
    ctx.note_writes(g, {bb for _, bb in stores} | {out})
    loads = {wv, cols}
    if frontier != [n] or len(stores) > 1 or base is None:
        loads |= ctx.emit_epilogue(g, n, frontier, lambda body: _nchw_index(body, Og, geo["OW"]))
    g.members = list(frontier)
    ctx.note_reads(g, loads)


def _nchw_index(body, Og, OW):
    """The NCHW index of the product's point (n, g, o, p) of the [N, G, Og, OH*OW] view."""
    vn, vg, vo, vp = (body.idx(k) for k in range(4))
    return (vn, body.iadd(body.imul(vg, body.iconst(Og)), vo),
            body.ifloordiv(vp, body.iconst(OW)), body.imod(vp, body.iconst(OW)))


def _product(ctx, n, kern):
    """A MatmulKernel of n's gradient with no epilogue: it writes kern.out, reads a and b."""
    g = ctx.new_group(tuple(kern.batch) + (kern.m, kern.n), kern)
    ctx.note_writes(g, {kern.out})
    ctx.note_reads(g, {kern.a, kern.b})
    g.members = [n]


@lowering("conv2d_grad_input")
def lower_conv2d_grad_input(ctx, n):
    gy, w = n.inputs
    H, W = n.attrs["input_hw"]
    geo = _geometry(n, (n.shape[0], n.shape[1], H, W), w.shape, gy.shape[2:])
    dt = n.dtype
    N, G, Og, K, P, Cg, KH, KW = (geo[k] for k in ("N", "G", "Og", "K", "P", "Cg", "KH", "KW"))
    wv = ctx.view(ctx.operand_buffer(w, dt), (G, Og, K))
    gv = ctx.view(ctx.operand_buffer(gy, dt), (N, G, Og, P))
    cols = ctx.add_buffer("cols", TensorType(dt, (N, G, K, P)), "temp", n)
    _product(ctx, n, MatmulKernel("k_conv2d_grad_input", wv, gv, cols, (N, G), K, P, Og, trans_a=True,
                                  source=f"conv2d_grad_input {n.type}@{n.where}"))
    if KH * KW <= UNROLL_TAPS:
        _col2im_unrolled(ctx, n, cols, geo, dt)
        return
    # col2im: a gather over the KH x KW taps
    g = ctx.new_group(tuple(n.shape))
    st = g.new_stage((KH, KW), "reduce")
    b = st.body
    vn, vc, vh, vw, vi, vj = (b.idx(k) for k in range(6))
    hp = b.isub(b.iadd(vh, b.iconst(geo["pt"])), b.imul(vi, b.iconst(geo["dh"])))
    wp = b.isub(b.iadd(vw, b.iconst(geo["pl"])), b.imul(vj, b.iconst(geo["dw"])))
    oh, ow = b.ifloordiv(hp, b.iconst(geo["sh"])), b.ifloordiv(wp, b.iconst(geo["sw"]))
    ok = b.land(b.land(in_range(b, hp, geo["OH"] * geo["sh"]), in_range(b, wp, geo["OW"] * geo["sw"])),
                b.land(b.emit("equal", (b.imod(hp, b.iconst(geo["sh"])), b.iconst(0)), "bool"),
                       b.emit("equal", (b.imod(wp, b.iconst(geo["sw"])), b.iconst(0)), "bool")))
    ok = b.land(ok, b.land(b.emit("less", (oh, b.iconst(geo["OH"])), "bool"),
                           b.emit("less", (ow, b.iconst(geo["OW"])), "bool")))
    grp = b.ifloordiv(vc, b.iconst(Cg))
    k = b.iadd(b.imul(b.imod(vc, b.iconst(Cg)), b.iconst(KH * KW)), b.iadd(b.imul(vi, b.iconst(KW)), vj))
    p = b.iadd(b.imul(oh, b.iconst(geo["OW"])), ow)
    v = st.emitter.load(cols, (vn, grp, k, p), ok)
    v = b.emit("where", (ok, v, const(b, 0, dt)), dt)
    st.reduce.append(("sum", v))
    ctx.register_result(g, n, 0, 0)
    ctx.note_reads(g, st.emitter.loads)


def _tap_source(b, v, size, pad, tap, dil, stride, out):
    """Output coordinate whose window tap `tap` reads input coordinate v (v in
    [0, size)), and the mask saying it exists (None when it always does)."""
    p = b.isub(b.iadd(v, b.iconst(pad)), b.iconst(tap * dil))
    lo = pad - tap * dil
    hi = size - 1 + pad - tap * dil if isinstance(size, int) else None
    o = b.ifloordiv(p, b.iconst(stride))
    ok = None if lo >= 0 else b.emit("greater_equal", (p, b.iconst(0)), "bool")
    if stride > 1:
        ok = b.land(ok, b.emit("equal", (b.imod(p, b.iconst(stride)), b.iconst(0)), "bool"))
    if not (isinstance(out, int) and hi is not None and hi // stride < out):
        ok = b.land(ok, b.emit("less", (o, b.isize(out)), "bool"))
    return o, ok


def _col2im_unrolled(ctx, n, cols, geo, dt):
    """col2im as one point's sum over the KH x KW taps, written out: at every input
    point (n, c, h, w) each tap reads one column entry, masked where the window does
    not exist; along w those entries are contiguous, so the w loop vectorises with
    masked loads (the mask of a tap's row is uniform along it)."""
    Cg, KH, KW, OW = geo["Cg"], geo["KH"], geo["KW"], geo["OW"]
    g = ctx.new_group(tuple(n.shape))
    st = g.new_stage((), "reduce")
    b = st.body
    vn, vc, vh, vw = (b.idx(k) for k in range(4))
    grp = b.ifloordiv(vc, b.iconst(Cg))
    cbase = b.imul(b.imod(vc, b.iconst(Cg)), b.iconst(KH * KW))
    rows = [_tap_source(b, vh, geo["H"], geo["pt"], i, geo["dh"], geo["sh"], geo["OH"]) for i in range(KH)]
    cols_ = [_tap_source(b, vw, geo["W"], geo["pl"], j, geo["dw"], geo["sw"], geo["OW"]) for j in range(KW)]
    total = None
    for i, (oh, okh) in enumerate(rows):
        for j, (ow, okw) in enumerate(cols_):
            ok = b.land(okh, okw)
            k = b.iadd(cbase, b.iconst(i * KW + j))
            v = st.emitter.load(cols, (vn, grp, k, b.iadd(b.imul(oh, b.iconst(OW)), ow)), ok)
            total = v if total is None else b.emit("add", (total, v), dt)
    st.reduce.append(("sum", total))
    ctx.register_result(g, n, 0, 0)
    ctx.note_reads(g, st.emitter.loads)


@lowering("conv2d_grad_filter")
def lower_conv2d_grad_filter(ctx, n):
    x, gy = n.inputs
    geo = _geometry(n, x.shape, n.shape, gy.shape[2:])
    dt = n.dtype
    N, G, Og, K, P, Cg, KH, KW = (geo[k] for k in ("N", "G", "Og", "K", "P", "Cg", "KH", "KW"))
    # cols in the forward conv's [N, G, K, P] layout (its im2col writes P innermost, which
    # vectorises; the [P, K] layout did not) and the product takes it transposed
    cols = _im2col(ctx, n, x, geo, dt)
    gv = ctx.view(ctx.operand_buffer(gy, dt), (N, G, Og, P))
    part = ctx.add_buffer("t_dw_per_example", TensorType(dt, (N, G, Og, K)), "temp", n)
    _product(ctx, n, MatmulKernel("k_conv2d_grad_filter", gv, cols, part, (N, G), Og, K, P, trans_b=True,
                                  source=f"conv2d_grad_filter {n.type}@{n.where}"))
    g = ctx.new_group(tuple(n.shape))
    st = g.new_stage((N,), "reduce")
    b = st.body
    vo, vc, vi, vj, vn = (b.idx(k) for k in range(5))
    k = b.iadd(b.imul(vc, b.iconst(KH * KW)), b.iadd(b.imul(vi, b.iconst(KW)), vj))
    v = st.emitter.load(part, (vn, b.ifloordiv(vo, b.iconst(Og)), b.imod(vo, b.iconst(Og)), k))
    st.reduce.append(("sum", v))
    ctx.register_result(g, n, 0, 0)
    ctx.note_reads(g, st.emitter.loads)
