"""Convolutions as whole-batch contractions: one GEMM per convolution and per
gradient, whatever the batch size (passes/lower/registry.py rules).

The batch is laid out channel-major, so that it is part of a matrix dimension:

- cols [G*K, N, OH, OW] (K = Cg*KH*KW, row g*K + k = c*KH*KW + tap): the windows of
  x, written by one im2col loop kernel (masked loads do the zero padding, masks
  that always hold are left out; x's producer is inlined into them). The loop runs
  over (G*K, N, OH, OW): the first axis is long enough to split across threads, the
  innermost steps along a row of x and of cols, so it vectorises.
- gy_t [O, N, OH, OW]: the output gradient, channel-major (a copy of gy that inlines
  its producer), shared by both gradients.

Then, with P = (N, OH, OW) a matrix dimension of three axes (passes/program.py), each
product is one MatmulKernel, batched over the G groups only (one BLAS call when G = 1):

- conv2d:             y_t[G, Og, P] = w[G, Og, K] @ cols[G, K, P]; the epilogue walks
  (G, Og, N, OH, OW) and stores NCHW y (and bias + activation, as a matmul's does).
- conv2d_grad_input:  dcols[G, K, P] = w[G, Og, K]ᵀ @ gy_t[G, Og, P], then col2im as a
  gather reduction: each input point sums, over the KH x KW taps, the column entries
  that came from it (masked where the stride skips it or the window leaves the
  output). Up to UNROLL_TAPS taps the sum is written out in one point's body, so the
  innermost loop is the input row (contiguous masked loads, vectorised); more taps
  keep an inner loop over them.
- conv2d_grad_filter: dw[G, Og, K] = gy_t[G, Og, P] @ cols[G, K, P]ᵀ, contracting over
  the whole batch, then a copy stage that the SGD step's epilogue joins like any
  reduction's. The forward conv's cols are reused when it reads the same x (the
  memory plan keeps them alive until their last reader; passes/memory.py places them).

With a static batch of one, cols and gy_t of a 1x1, stride-1, unpadded convolution are
x and gy themselves (views), and the product is written straight into NCHW y.
Results of the last reduce stage are registered like a reduction's, so elementwise
consumers join these kernels as later stages.
"""
from __future__ import annotations

from nngraph.types import TensorType

from ..program import MatmulKernel, Store
from .registry import lowering
from .window import UNROLL_TAPS, const, in_range, masked_value, range_mask


def _geometry(n, x_shape, w_shape, out_hw):
    a = n.attrs
    G = a["groups"]
    O, Cg, KH, KW = w_shape
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    return dict(G=G, O=O, Og=O // G, Cg=Cg, KH=KH, KW=KW, K=Cg * KH * KW, sh=sh, sw=sw, pt=pt, pl=pl,
                dh=dh, dw=dw, N=x_shape[0], H=x_shape[2], W=x_shape[3], OH=out_hw[0], OW=out_hw[1])


def _columns(geo) -> tuple:
    """The three axes of the product's column dimension: (N, OH, OW)."""
    return (geo["N"], geo["OH"], geo["OW"])


def _single_example(geo) -> bool:
    return isinstance(geo["N"], int) and geo["N"] == 1


def _is_identity_window(geo) -> bool:
    """Is cols x itself: one example, 1x1 filter, stride 1, no padding?"""
    return (_single_example(geo) and geo["KH"] == geo["KW"] == 1 and geo["sh"] == geo["sw"] == 1
            and geo["pt"] == geo["pl"] == 0 and (geo["H"], geo["W"]) == (geo["OH"], geo["OW"]))


def _im2col(ctx, n, x, geo, dtype):
    """cols as a [G, K, N, OH, OW] buffer. The same windows of the same x are made once:
    the filter gradient reuses the forward conv's cols."""
    key = ("im2col", id(x), dtype) + tuple(sorted(geo.items()))
    return ctx.cached(key, lambda: _im2col_buffer(ctx, n, x, geo, dtype))


def _im2col_buffer(ctx, n, x, geo, dtype):
    G, K = geo["G"], geo["K"]
    if _is_identity_window(geo):
        return ctx.view(ctx.operand_buffer(x, dtype), (G, K) + _columns(geo))
    N, OH, OW = _columns(geo)
    cols = ctx.add_buffer("cols", TensorType(dtype, (G * K, N, OH, OW)), "temp", n)
    g = ctx.new_group((G * K, N, OH, OW))
    st = g.new_stage((), "map")
    b, em = st.body, st.emitter
    vq, vn, oh, ow = (b.idx(a) for a in range(4))
    khw = geo["KH"] * geo["KW"]
    c = b.ifloordiv(vq, b.iconst(khw))
    i = b.imod(b.ifloordiv(vq, b.iconst(geo["KW"])), b.iconst(geo["KH"]))
    j = b.imod(vq, b.iconst(geo["KW"]))
    hh = b.isub(b.iadd(b.imul(oh, b.iconst(geo["sh"])), b.imul(i, b.iconst(geo["dh"]))), b.iconst(geo["pt"]))
    ww = b.isub(b.iadd(b.imul(ow, b.iconst(geo["sw"])), b.imul(j, b.iconst(geo["dw"]))), b.iconst(geo["pl"]))
    h_hi = (OH - 1) * geo["sh"] + (geo["KH"] - 1) * geo["dh"] - geo["pt"]
    w_hi = (OW - 1) * geo["sw"] + (geo["KW"] - 1) * geo["dw"] - geo["pl"]
    mask = b.land(range_mask(b, hh, -geo["pt"], h_hi, geo["H"]), range_mask(b, ww, -geo["pl"], w_hi, geo["W"]))
    v = masked_value(em, x, (vn, c, hh, ww), mask, dtype, 0)
    st.stores.append(Store(cols, (vq, vn, oh, ow), v))
    g.members.append(n)
    ctx.note_reads(g, em.loads)
    ctx.note_writes(g, {cols})
    return ctx.view(cols, (G, K) + _columns(geo))


def _channel_major(ctx, n, gy, geo, dtype):
    """gy_t as a [G, Og, N, OH, OW] buffer, made once per gy for both gradients."""
    key = ("channel_major", id(gy), dtype)
    return ctx.cached(key, lambda: _channel_major_buffer(ctx, n, gy, geo, dtype))


def _channel_major_buffer(ctx, n, gy, geo, dtype):
    G, Og, O = geo["G"], geo["Og"], geo["O"]
    if _single_example(geo):
        return ctx.view(ctx.operand_buffer(gy, dtype), (G, Og) + _columns(geo))
    N, OH, OW = _columns(geo)
    t = ctx.add_buffer(f"t_{gy.op}_channel_major", TensorType(dtype, (O, N, OH, OW)), "temp", n)
    g = ctx.new_group((O, N, OH, OW))
    st = g.new_stage((), "map")
    b = st.body
    vo, vn, oh, ow = (b.idx(a) for a in range(4))
    v = b.cast(st.emitter.value(gy, (vn, vo, oh, ow)), dtype)
    st.stores.append(Store(t, (vo, vn, oh, ow), v))
    g.members.append(gy)
    ctx.note_reads(g, st.emitter.loads)
    ctx.note_writes(g, {t})
    return ctx.view(t, (G, Og) + _columns(geo))


@lowering("conv2d")
def lower_conv2d(ctx, n):
    x, w = n.inputs
    geo = _geometry(n, x.shape, w.shape, n.shape[2:])
    dt = n.dtype
    G, Og, K = geo["G"], geo["Og"], geo["K"]
    cols = _im2col(ctx, n, x, geo, dt)
    wv = ctx.view(ctx.operand_buffer(w, dt), (G, Og, K))
    frontier = ctx.plan.epilogue.get(id(n), [n])
    stores, base = ctx.epilogue_output(n, frontier)
    shape = (G, Og) + _columns(geo)
    direct = base is not None and _single_example(geo)     # [G, Og, 1, OH, OW] is NCHW y
    out = ctx.view(base, shape) if direct else ctx.add_buffer("t_conv", TensorType(dt, shape), "temp", n)
    kern = MatmulKernel("k_conv2d", wv, cols, out, (G,), Og, _columns(geo), K,
                        source=f"conv2d {n.type}@{n.where}")
    g = ctx.new_group(shape, kern)
    ctx.note_writes(g, {bb for _, bb in stores} | {out})
    loads = {wv, cols}
    if not direct or frontier != [n] or len(stores) > 1:
        loads |= ctx.emit_epilogue(g, n, frontier, lambda body: _nchw_index(body, Og))
    g.members = list(frontier)
    ctx.note_reads(g, loads)


def _nchw_index(body, Og):
    """The NCHW index of the product's point (g, o, n, oh, ow)."""
    vg, vo, vn, oh, ow = (body.idx(k) for k in range(5))
    return (vn, body.iadd(body.imul(vg, body.iconst(Og)), vo), oh, ow)


def _product(ctx, n, kern):
    """A MatmulKernel of n's gradient with no epilogue: it writes kern.out, reads a and b."""
    g = ctx.new_group(kern.epilogue_domain(), kern)
    ctx.note_writes(g, {kern.out})
    ctx.note_reads(g, {kern.a, kern.b})
    g.members = [n]


@lowering("conv2d_grad_input")
def lower_conv2d_grad_input(ctx, n):
    gy, w = n.inputs
    H, W = n.attrs["input_hw"]
    geo = _geometry(n, (n.shape[0], n.shape[1], H, W), w.shape, gy.shape[2:])
    dt = n.dtype
    G, Og, K = geo["G"], geo["Og"], geo["K"]
    wv = ctx.view(ctx.operand_buffer(w, dt), (G, Og, K))
    gv = _channel_major(ctx, n, gy, geo, dt)
    dcols = ctx.add_buffer("dcols", TensorType(dt, (G * K,) + _columns(geo)), "temp", n)
    _product(ctx, n, MatmulKernel("k_conv2d_grad_input", wv, gv, ctx.view(dcols, (G, K) + _columns(geo)), (G,),
                                  K, _columns(geo), Og, trans_a=True,
                                  source=f"conv2d_grad_input {n.type}@{n.where}"))
    if geo["KH"] * geo["KW"] <= UNROLL_TAPS:
        _col2im_unrolled(ctx, n, dcols, geo, dt)
    else:
        _col2im_loop(ctx, n, dcols, geo, dt)


def _col2im_loop(ctx, n, dcols, geo, dt):
    """col2im as a reduce stage over the KH x KW taps (large filters)."""
    KH, KW = geo["KH"], geo["KW"]
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
    row = b.iadd(b.imul(vc, b.iconst(KH * KW)), b.iadd(b.imul(vi, b.iconst(KW)), vj))
    v = st.emitter.load(dcols, (row, vn, oh, ow), ok)
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


def _col2im_unrolled(ctx, n, dcols, geo, dt):
    """col2im as one point's sum over the KH x KW taps, written out: at every input
    point (n, c, h, w) each tap reads one column entry, masked where the window does
    not exist; along w those entries are contiguous, so the w loop vectorises with
    masked loads (the mask of a tap's row is uniform along it)."""
    KH, KW = geo["KH"], geo["KW"]
    g = ctx.new_group(tuple(n.shape))
    st = g.new_stage((), "reduce")
    b = st.body
    vn, vc, vh, vw = (b.idx(k) for k in range(4))
    base = b.imul(vc, b.iconst(KH * KW))
    rows = [_tap_source(b, vh, geo["H"], geo["pt"], i, geo["dh"], geo["sh"], geo["OH"]) for i in range(KH)]
    cols_ = [_tap_source(b, vw, geo["W"], geo["pl"], j, geo["dw"], geo["sw"], geo["OW"]) for j in range(KW)]
    total = None
    for i, (oh, okh) in enumerate(rows):
        for j, (ow, okw) in enumerate(cols_):
            v = st.emitter.load(dcols, (b.iadd(base, b.iconst(i * KW + j)), vn, oh, ow), b.land(okh, okw))
            total = v if total is None else b.emit("add", (total, v), dt)
    st.reduce.append(("sum", total))
    ctx.register_result(g, n, 0, 0)
    ctx.note_reads(g, st.emitter.loads)


@lowering("conv2d_grad_filter")
def lower_conv2d_grad_filter(ctx, n):
    x, gy = n.inputs
    geo = _geometry(n, x.shape, n.shape, gy.shape[2:])
    dt = n.dtype
    G, Og, K = geo["G"], geo["Og"], geo["K"]
    cols = _im2col(ctx, n, x, geo, dt)
    gv = _channel_major(ctx, n, gy, geo, dt)
    dw = ctx.add_buffer("t_dw", TensorType(dt, tuple(n.shape)), "temp", n)
    _product(ctx, n, MatmulKernel("k_conv2d_grad_filter", gv, cols, ctx.view(dw, (G, Og, K)), (G,), Og, K,
                                  _columns(geo), trans_b=True, source=f"conv2d_grad_filter {n.type}@{n.where}"))
    # a copy stage registered as the result, so the SGD step joins it as a later stage
    g = ctx.new_group(tuple(n.shape))
    st = g.new_stage((), "reduce")
    st.reduce.append(("sum", st.emitter.load(dw, tuple(st.body.idx(k) for k in range(4)))))
    ctx.register_result(g, n, 0, 0)
    ctx.note_reads(g, st.emitter.loads)
