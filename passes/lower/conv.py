"""Convolutions as contractions: im2col (or x itself) and one MatmulKernel per
convolution and per gradient (passes/lower/registry.py rules), in the layout chosen
for the layer (passes/lower/conv_layout.py: the whole batch as one GEMM, or one
GEMM per example; by measurement on target="cpu").

- cols (window row c*KH*KW + tap, at each output point (n, oh, ow)): written by one
  im2col loop kernel (masked loads do the zero padding, masks that always hold are
  left out; x's producer is inlined into them). Its first loop axis is long enough
  to split across threads; the innermost steps along a row of x and of cols, so it
  vectorises. The same windows of the same x are made once: the filter gradient
  reuses the forward conv's cols (the memory plan, passes/memory.py, keeps them
  alive until their last reader).
- conv2d:             y = w[G, Og, K] @ cols; the epilogue walks the product's
  points and stores NCHW y (and bias + activation, as a matmul's does); where the
  product is NCHW y itself it is written there. At a static batch of one the product
  is marked own_threads (see _is_one_image).
- conv2d_grad_input:  dcols = w[G, Og, K]ᵀ @ gy, then col2im as a gather reduction:
  each input point sums, over the KH x KW taps, the column entries that came from it
  (masked where the stride skips it or the window leaves the output). Up to
  UNROLL_TAPS taps the sum is written out in one point's body, so the innermost loop
  is the input row (contiguous masked loads, vectorised); more taps keep an inner
  loop over them.
- conv2d_grad_filter: dw = gy @ colsᵀ (per example: then a sum over N), in a stage
  the SGD step's epilogue joins like any reduction's.

The whole-batch layout reads gy channel-major (a copy that inlines gy's producer;
passes/sibling_fusion.py folds it into the bias gradient's reduction over the same
elements). With a static batch of one, cols of a 1x1, stride-1, unpadded convolution
is x itself (a view).
Results of the last reduce stage are registered like a reduction's, so elementwise
consumers join these kernels as later stages.
"""
from __future__ import annotations

from nngraph.types import TensorType

from ..program import MatmulKernel, Store
from ..direct_window import in_place_window, window_of
from .conv_direct import emit_phase_copy
from .conv_taps import lower_taps_conv2d, lower_taps_grad_filter, lower_taps_grad_input
from .conv_layout import is_one_image, make_layout
from .registry import lowering
from .window import UNROLL_TAPS, const, in_range, masked_value, range_mask, tap_source, window_span


def _geometry(n, x_shape, w_shape, out_hw):
    a = n.attrs
    G = a["groups"]
    O, Cg, KH, KW = w_shape
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    return dict(G=G, O=O, Og=O // G, Cg=Cg, KH=KH, KW=KW, K=Cg * KH * KW, sh=sh, sw=sw, pt=pt, pl=pl,
                dh=dh, dw=dw, N=x_shape[0], H=x_shape[2], W=x_shape[3], OH=out_hw[0], OW=out_hw[1])


def _node_geometry(n):
    """The geometry of the layer a conv2d, conv2d_grad_input or conv2d_grad_filter
    node belongs to (the same dict for a conv and its gradients)."""
    a, b = n.inputs
    if n.op == "conv2d":
        return _geometry(n, a.shape, b.shape, n.shape[2:])
    if n.op == "conv2d_grad_input":
        return _geometry(n, tuple(n.shape[:2]) + tuple(n.attrs["input_hw"]), b.shape, a.shape[2:])
    return _geometry(n, a.shape, n.shape, b.shape[2:])


CONV_OPS = ("conv2d", "conv2d_grad_input", "conv2d_grad_filter")


def _layout(ctx, geo, dtype, epilogue=""):
    """The layer's layout (passes/lower/conv_layout.py), one choice per geometry so that
    a conv and its gradients agree; the chooser is told which of the three products
    the graph makes at this geometry. One image in one group: conv_layout.OneImage,
    or its pixel-major product where the graph makes only the forward one at this
    geometry and the chooser picks "one_image_t"; the chooser is then also told the
    kind of the layer's epilogue (epilogue_kind, as geo["epilogue"]): a direct kernel
    carries it in registers where the BLAS's product pays a pass over its output."""
    key = ("conv_layout", dtype) + tuple(sorted(geo.items()))
    products = ctx.cached(("conv_products", dtype) + key[2:], lambda: _products(ctx, geo, dtype))
    if is_one_image(geo) and products != ("conv2d",):
        return make_layout("one_image", geo)
    told = dict(geo, epilogue=epilogue) if is_one_image(geo) and epilogue else geo
    return make_layout(ctx.cached(key + (epilogue,), lambda: ctx.conv_choice(told, dtype, products)), geo)


def epilogue_kind(ctx, n, frontier) -> str:
    """What the epilogue of conv2d node n (its fused frontier) reads besides the product:
    "" (no epilogue), "points" (a materialised value of n's shape: a residual) or "rows"
    (smaller ones only: a bias per channel). The values it computes inline (the
    Emitter's rule: what has no buffer, or is in the frontier) are walked through."""
    if [f for f in frontier if f is not n] == []:
        return ""
    inside, seen, shapes = {id(f) for f in frontier}, set(), set()
    todo = list(frontier)
    while todo:
        m = todo.pop()
        if m is n or id(m) in seen:
            continue
        seen.add(id(m))
        if id(m) in ctx.buf_of and id(m) not in inside:
            shapes.add(tuple(m.shape))
        else:
            todo.extend(m.inputs)
    return "points" if tuple(n.shape) in shapes else "rows"


def _products(ctx, geo, dtype) -> tuple:
    """Which of CONV_OPS the graph makes at this geometry and dtype."""
    ops = {n.op for n in ctx.plan.order if n.op in CONV_OPS and n.dtype == dtype and _node_geometry(n) == geo}
    return tuple(op for op in CONV_OPS if op in ops)


def identity_window(geo) -> bool:
    """Is cols x itself: one example, 1x1 filter, stride 1, no padding?"""
    return isinstance(geo["N"], int) and geo["N"] == 1 and in_place_window(geo)


def _is_one_image(geo) -> bool:
    """A static batch of one (inference on an image): the layer's product is one GEMM
    between its im2col (or pooling, or epilogue) loops, which the backend splits
    across its threads; the product is split across the same threads (own_threads)
    rather than handed to BLAS workers that keep spinning on those cores (ResNet-50
    on two busy cores with OpenBLAS's two threads: 400-600 ms of CPU per inference for
    about 110 ms of work, its im2col loops 1.5-2x slower than on one thread)."""
    return isinstance(geo["N"], int) and geo["N"] == 1


def _im2col(ctx, n, x, lay, dtype):
    """cols viewed as the products' operand [batch..., K, *columns]."""
    key = ("im2col", lay.name, id(x), dtype) + tuple(sorted(lay.geo.items()))
    return ctx.cached(key, lambda: _im2col_buffer(ctx, n, x, lay, dtype))


def _im2col_buffer(ctx, n, x, lay, dtype):
    geo = lay.geo
    if identity_window(geo):
        return ctx.view(ctx.operand_buffer(x, dtype), lay.matrix(geo["K"]))
    cols = ctx.add_buffer("cols", TensorType(dtype, lay.cols_shape()), "temp", n)
    domain, (a_row, a_n, a_oh, a_ow) = lay.im2col_axes()
    g = ctx.new_group(domain)
    st = g.new_stage((), "map")
    b, em = st.body, st.emitter
    vq, vn, oh, ow = b.idx(a_row), b.idx(a_n), b.idx(a_oh), b.idx(a_ow)
    c = b.ifloordiv(vq, b.iconst(geo["KH"] * geo["KW"]))
    i = b.imod(b.ifloordiv(vq, b.iconst(geo["KW"])), b.iconst(geo["KH"]))
    j = b.imod(vq, b.iconst(geo["KW"]))
    hh = b.isub(b.iadd(b.imul(oh, b.iconst(geo["sh"])), b.imul(i, b.iconst(geo["dh"]))), b.iconst(geo["pt"]))
    ww = b.isub(b.iadd(b.imul(ow, b.iconst(geo["sw"])), b.imul(j, b.iconst(geo["dw"]))), b.iconst(geo["pl"]))
    h_hi = window_span(geo, "h") - 1 - geo["pt"]
    w_hi = window_span(geo, "w") - 1 - geo["pl"]
    mask = b.land(range_mask(b, hh, -geo["pt"], h_hi, geo["H"]), range_mask(b, ww, -geo["pl"], w_hi, geo["W"]))
    v = masked_value(em, x, (vn, c, hh, ww), mask, dtype, 0)
    st.stores.append(Store(cols, lay.cols_index(vq, vn, oh, ow), v))
    g.members.append(n)
    ctx.note_reads(g, em.loads)
    ctx.note_writes(g, {cols})
    return ctx.view(cols, lay.matrix(geo["K"]))


def _grad_out(ctx, n, gy, lay, dtype):
    """gy viewed as the products' operand [batch..., Og, *columns]: gy itself, or its
    channel-major copy [O, N, OH, OW] (made once per gy for both gradients)."""
    geo = lay.geo
    if lay.gy_is_nchw():
        return ctx.view(ctx.operand_buffer(gy, dtype), lay.matrix(geo["Og"]))
    key = ("channel_major", id(gy), dtype)
    return ctx.view(ctx.cached(key, lambda: _channel_major(ctx, gy, geo, dtype)), lay.matrix(geo["Og"]))


def _channel_major(ctx, gy, geo, dtype):
    N, OH, OW = geo["N"], geo["OH"], geo["OW"]
    t = ctx.add_buffer(f"t_{gy.op}_channel_major", TensorType(dtype, (geo["O"], N, OH, OW)), "temp", gy)
    g = ctx.new_group((geo["O"], N, OH, OW))
    st = g.new_stage((), "map")
    b = st.body
    vo, vn, oh, ow = (b.idx(a) for a in range(4))
    v = b.cast(st.emitter.value(gy, (vn, vo, oh, ow)), dtype)
    st.stores.append(Store(t, (vo, vn, oh, ow), v))
    g.members.append(gy)
    ctx.note_reads(g, st.emitter.loads)
    ctx.note_writes(g, {t})
    return t


@lowering("conv2d")
def lower_conv2d(ctx, n):
    x, w = n.inputs
    geo = _node_geometry(n)
    dt = n.dtype
    frontier = ctx.plan.epilogue.get(id(n), [n])
    lay = _layout(ctx, geo, dt, epilogue_kind(ctx, n, frontier))
    if lay.name == "taps":
        lower_taps_conv2d(ctx, n, x, w, geo, frontier)
        return
    G, Og, K = geo["G"], geo["Og"], geo["K"]
    stores, base = ctx.epilogue_output(n, frontier)
    if lay.name == "one_image_direct":
        _direct_conv2d(ctx, n, x, ctx.view(ctx.operand_buffer(w, dt), (Og, K)), lay, frontier, stores, base)
        return
    if lay.name == "one_image_t":
        _pixel_major_conv2d(ctx, n, ctx.view(ctx.operand_buffer(w, dt), (Og, K)), _im2col(ctx, n, x, lay, dt), lay,
                            frontier, stores)
        return
    cols = _im2col(ctx, n, x, lay, dt)
    wv = ctx.view(ctx.operand_buffer(w, dt), (G, Og, K))
    shape = lay.matrix(Og)
    direct = base is not None and lay.writes_nchw()
    out = ctx.view(base, shape) if direct else ctx.add_buffer("t_conv", TensorType(dt, shape), "temp", n)
    kern = MatmulKernel("k_conv2d", wv, cols, out, lay.batch(), Og, lay.cols_axes, K,
                        source=f"conv2d {n.type}@{n.where}", own_threads=_is_one_image(geo))
    _product_group(ctx, n, kern, shape, {wv, cols}, frontier, stores, lay,
                   epilogue=not direct or frontier != [n] or len(stores) > 1)


def _pixel_major_conv2d(ctx, n, wv, cols, lay, frontier, stores):
    """The one-image product pixel-major (conv_layout "one_image_t"): t[P, Og] =
    colsᵀ @ wᵀ into a temp, its epilogue storing NCHW y (and bias, residual add,
    relu, as the channel-major product's)."""
    geo = lay.geo
    P, Og, K = geo["OH"] * geo["OW"], geo["Og"], geo["K"]
    out = ctx.add_buffer("t_conv", TensorType(n.dtype, (P, Og)), "temp", n)
    kern = MatmulKernel("k_conv2d", cols, wv, out, (), P, Og, K, trans_a=True, trans_b=True,
                        source=f"conv2d {n.type}@{n.where}", own_threads=True)
    _product_group(ctx, n, kern, (P, Og), {wv, cols}, frontier, stores, lay, epilogue=True)


def _direct_conv2d(ctx, n, x, wv, lay, frontier, stores, base):
    """The one-image product computed directly (conv_layout "one_image_direct"): a
    MatmulKernel whose b is the phase-split copy of x (x itself where the window is
    read in place, passes/direct_window.in_place_window) and whose `window` says so
    (passes/direct_window.py), writing NCHW y (or a temp its epilogue reads)."""
    geo = lay.geo
    win = window_of(geo)
    copy = (ctx.view(ctx.operand_buffer(x, n.dtype), (win.elements(),)) if win.in_place
            else emit_phase_copy(ctx, n, x, geo, win, n.dtype))
    shape = (geo["Og"], geo["OH"], geo["OW"])
    direct = base is not None
    out = ctx.view(base, shape) if direct else ctx.add_buffer("t_conv", TensorType(n.dtype, shape), "temp", n)
    kern = MatmulKernel("k_conv2d", wv, copy, out, (), geo["Og"], (geo["OH"], geo["OW"]), geo["K"],
                        source=f"conv2d {n.type}@{n.where}", own_threads=True, window=win)
    _product_group(ctx, n, kern, shape, {wv, copy}, frontier, stores, lay,
                   epilogue=not direct or frontier != [n] or len(stores) > 1)


def _product_group(ctx, n, kern, shape, reads, frontier, stores, lay, epilogue: bool):
    """The group of a forward product `kern` (writing kern.out and the frontier's
    stores), with the epilogue that finishes NCHW y from kern.out where one is
    needed: one home for the channel-major, pixel-major and direct products."""
    g = ctx.new_group(shape, kern)
    ctx.note_writes(g, {bb for _, bb in stores} | {kern.out})
    loads = set(reads)
    if epilogue:
        loads |= ctx.emit_epilogue(g, n, frontier, lay.nchw_index)
    g.members = list(frontier)
    ctx.note_reads(g, loads)


def _product(ctx, n, kern):
    """A MatmulKernel of n's gradient with no epilogue: it writes kern.out, reads a and b."""
    g = ctx.new_group(kern.epilogue_domain(), kern)
    ctx.note_writes(g, {kern.out})
    ctx.note_reads(g, {kern.a, kern.b})
    g.members = [n]


@lowering("conv2d_grad_input")
def lower_conv2d_grad_input(ctx, n):
    gy, w = n.inputs
    geo = _node_geometry(n)
    dt = n.dtype
    lay = _layout(ctx, geo, dt)
    if lay.name == "taps":
        lower_taps_grad_input(ctx, n, gy, w, geo)
        return
    G, Og, K = geo["G"], geo["Og"], geo["K"]
    wv = ctx.view(ctx.operand_buffer(w, dt), (G, Og, K))
    gv = _grad_out(ctx, n, gy, lay, dt)
    dcols = ctx.add_buffer("dcols", TensorType(dt, lay.cols_shape()), "temp", n)
    _product(ctx, n, MatmulKernel("k_conv2d_grad_input", wv, gv, ctx.view(dcols, lay.matrix(K)), lay.batch(),
                                  K, lay.cols_axes, Og, trans_a=True,
                                  source=f"conv2d_grad_input {n.type}@{n.where}"))
    if geo["KH"] * geo["KW"] <= UNROLL_TAPS:
        _col2im_unrolled(ctx, n, dcols, lay, dt)
    else:
        _col2im_loop(ctx, n, dcols, lay, dt)


def _col2im_group(ctx, n, lay, inner):
    """col2im's kernel: a reduce stage over `inner` at every input point, the outer
    loops in the layout's col2im_order (the whole batch's dcols rows are long, so c
    runs outermost and each row is read front to back); (stage, (n, c, h, w) indices)."""
    order = lay.col2im_order
    g = ctx.new_group(tuple(n.shape[k] for k in order))
    st = g.new_stage(inner, "reduce")
    at = {k: st.body.idx(q) for q, k in enumerate(order)}
    return g, st, tuple(at[k] for k in range(4))


def _col2im_loop(ctx, n, dcols, lay, dt):
    """col2im as a reduce stage over the KH x KW taps (large filters)."""
    geo = lay.geo
    KH, KW = geo["KH"], geo["KW"]
    g, st, (vn, vc, vh, vw) = _col2im_group(ctx, n, lay, (KH, KW))
    b = st.body
    vi, vj = b.idx(4), b.idx(5)
    hp = b.isub(b.iadd(vh, b.iconst(geo["pt"])), b.imul(vi, b.iconst(geo["dh"])))
    wp = b.isub(b.iadd(vw, b.iconst(geo["pl"])), b.imul(vj, b.iconst(geo["dw"])))
    oh, ow = b.ifloordiv(hp, b.iconst(geo["sh"])), b.ifloordiv(wp, b.iconst(geo["sw"]))
    ok = b.land(b.land(in_range(b, hp, geo["OH"] * geo["sh"]), in_range(b, wp, geo["OW"] * geo["sw"])),
                b.land(b.emit("equal", (b.imod(hp, b.iconst(geo["sh"])), b.iconst(0)), "bool"),
                       b.emit("equal", (b.imod(wp, b.iconst(geo["sw"])), b.iconst(0)), "bool")))
    ok = b.land(ok, b.land(b.emit("less", (oh, b.iconst(geo["OH"])), "bool"),
                           b.emit("less", (ow, b.iconst(geo["OW"])), "bool")))
    row = b.iadd(b.imul(vc, b.iconst(KH * KW)), b.iadd(b.imul(vi, b.iconst(KW)), vj))
    v = st.emitter.load(dcols, lay.cols_index(row, vn, oh, ow), ok)
    v = b.emit("where", (ok, v, const(b, 0, dt)), dt)
    st.reduce.append(("sum", v))
    ctx.register_result(g, n, 0, 0, lay.col2im_order)
    ctx.note_reads(g, st.emitter.loads)


def _col2im_unrolled(ctx, n, dcols, lay, dt):
    """col2im as one point's sum over the KH x KW taps, written out: at every input
    point (n, c, h, w) each tap reads one column entry, masked where the window does
    not exist; along w those entries are contiguous, so the w loop vectorises with
    masked loads (the mask of a tap's row is uniform along it)."""
    geo = lay.geo
    KH, KW = geo["KH"], geo["KW"]
    g, st, (vn, vc, vh, vw) = _col2im_group(ctx, n, lay, ())
    b = st.body
    base = b.imul(vc, b.iconst(KH * KW))
    rows = [tap_source(b, vh, geo["H"], geo["pt"], i, geo["dh"], geo["sh"], geo["OH"]) for i in range(KH)]
    cols_ = [tap_source(b, vw, geo["W"], geo["pl"], j, geo["dw"], geo["sw"], geo["OW"]) for j in range(KW)]
    total = None
    for i, (oh, okh) in enumerate(rows):
        for j, (ow, okw) in enumerate(cols_):
            index = lay.cols_index(b.iadd(base, b.iconst(i * KW + j)), vn, oh, ow)
            v = st.emitter.load(dcols, index, b.land(okh, okw))
            total = v if total is None else b.emit("add", (total, v), dt)
    st.reduce.append(("sum", total))
    ctx.register_result(g, n, 0, 0, lay.col2im_order)
    ctx.note_reads(g, st.emitter.loads)


@lowering("conv2d_grad_filter")
def lower_conv2d_grad_filter(ctx, n):
    x, gy = n.inputs
    geo = _node_geometry(n)
    dt = n.dtype
    lay = _layout(ctx, geo, dt)
    if lay.name == "taps":
        lower_taps_grad_filter(ctx, n, x, gy, geo)
        return
    G, Og, K = geo["G"], geo["Og"], geo["K"]
    cols = _im2col(ctx, n, x, lay, dt)
    gv = _grad_out(ctx, n, gy, lay, dt)
    per_example = lay.batch()[:-1]          # () for the whole batch, (N,) per example
    part = ctx.add_buffer("t_dw", TensorType(dt, per_example + tuple(n.shape)), "temp", n)
    _product(ctx, n, MatmulKernel("k_conv2d_grad_filter", gv, cols, ctx.view(part, lay.batch() + (Og, K)),
                                  lay.batch(), Og, K, lay.cols_axes, trans_b=True,
                                  source=f"conv2d_grad_filter {n.type}@{n.where}"))
    # the sum over examples (or a copy), registered as the result: the SGD step joins it
    g = ctx.new_group(tuple(n.shape))
    st = g.new_stage(per_example, "reduce")
    b = st.body
    index = tuple(b.idx(k) for k in range(4 + len(per_example)))
    st.reduce.append(("sum", st.emitter.load(part, index[4:] + index[:4])))
    ctx.register_result(g, n, 0, 0)
    ctx.note_reads(g, st.emitter.loads)
