"""Tap-row convolutions (conv_layout "taps"): a layer's forward product and filter
gradient as loop kernels over the windows, with no im2col columns and no GEMM.

Why: a layer with few input channels (LeNet's first, 1 x 5 x 5 = 25 window rows, 6
output channels) makes thin products: [6, 25] x [25, N*784] and its filter gradient
[6, N*784] x [N*784, 25]. A BLAS runs them far below its rate (its register tile
wants more than 6 rows and more than 25 of depth), and their im2col columns are 25
times x's size, written once and read twice. Here:

- conv2d: at every output point (n, o, oh, ow), the sum over the KH x KW taps
  (written out, masks left out where they always hold) of w[o, c, i, j] x the input
  at the tap, with an inner reduce loop over the group's Cg input channels when there
  is more than one. The innermost loop is the output row (ow), contiguous in x and y,
  so it vectorises; w is a scalar per (o, tap). The product's epilogue (bias, relu,
  any elementwise frontier the fusion plan gave it) is a later map stage of the same
  kernel.
- conv2d_grad_filter: at every filter element (o, c, i, j), the sum over (n, oh, ow)
  of gy x the input at the tap: a reduction whose innermost axis is the output row.
- conv2d_grad_input (when the layer's input needs one): at every input point, the
  sum over Og output channels and the taps whose window covers it of gy x w.

Which layers take it is measured (runtime/conv_choice.py), as the other layouts are.
"""
from __future__ import annotations

from nngraph.types import TensorType

from ..program import Store
from .window import masked_value, range_mask, tap_source, window_span


def shifted_rows_shape(geo):
    """[KW, N, C, HP, OW]: for each tap column j, x's rows (with the padding rows that
    the taps reach, zeros) sampled at the output columns that tap reads."""
    hp = window_span(geo, "h")
    return (geo["KW"], geo["N"], geo["G"] * geo["Cg"], hp, geo["OW"])


def _shifted_rows(ctx, n, x, geo, dtype):
    """The buffer of shifted_rows_shape, made once per x and geometry (the conv and its
    filter gradient share it): xs[j, n, c, r, ow] = x[n, c, r - pt, ow*sw + j*dw - pl],
    zero outside x."""
    key = ("shifted_rows", id(x), dtype) + tuple(sorted(geo.items()))
    return ctx.cached(key, lambda: _shifted_rows_kernel(ctx, n, x, geo, dtype))


def _shifted_rows_kernel(ctx, n, x, geo, dtype):
    shape = shifted_rows_shape(geo)
    xs = ctx.add_buffer("shifted_rows", TensorType(dtype, shape), "temp", n)
    g = ctx.new_group(shape)
    st = g.new_stage((), "map")
    b, em = st.body, st.emitter
    vj, vn, vc, vr, vw = (b.idx(k) for k in range(5))
    hh = b.isub(vr, b.iconst(geo["pt"]))
    ww = b.isub(b.iadd(b.imul(vw, b.iconst(geo["sw"])), b.imul(vj, b.iconst(geo["dw"]))), b.iconst(geo["pl"]))
    w_hi = window_span(geo, "w") - 1 - geo["pl"]
    h_hi = shape[3] - 1 - geo["pt"]
    mask = b.land(range_mask(b, hh, -geo["pt"], h_hi, geo["H"]), range_mask(b, ww, -geo["pl"], w_hi, geo["W"]))
    st.stores.append(Store(xs, (vj, vn, vc, vr, vw), masked_value(em, x, (vn, vc, hh, ww), mask, dtype, 0)))
    g.members.append(n)
    ctx.note_reads(g, em.loads)
    ctx.note_writes(g, {xs})
    return xs


def _tap_row(b, geo, oh, i):
    """The row of the shifted input that output row oh's tap row i reads."""
    return b.iadd(b.imul(oh, b.iconst(geo["sh"])), b.iconst(i * geo["dh"]))


def _channel(b, geo, vo, vc):
    """The input channel of output channel vo's group, its channel vc in the group."""
    if geo["G"] == 1:
        return vc
    return b.iadd(b.imul(b.ifloordiv(vo, b.iconst(geo["Og"])), b.iconst(geo["Cg"])), vc)


def lower_taps_conv2d(ctx, n, x, w, geo, frontier):
    """conv2d n (and its epilogue `frontier`) as one loop kernel over n's points."""
    dt = n.dtype
    Cg = geo["Cg"]
    xs = _shifted_rows(ctx, n, x, geo, dt)
    g = ctx.new_group(tuple(n.shape))
    st = g.new_stage((Cg,) if Cg > 1 else (), "reduce")
    b, em = st.body, st.emitter
    vn, vo, oh, ow = (b.idx(k) for k in range(4))
    vc = b.idx(4) if Cg > 1 else b.iconst(0)
    c = _channel(b, geo, vo, vc)
    terms = []
    for i in range(geo["KH"]):
        for j in range(geo["KW"]):
            xv = em.load(xs, (b.iconst(j), vn, c, _tap_row(b, geo, oh, i), ow))
            wv = b.cast(em.value(w, (vo, vc, b.iconst(i), b.iconst(j))), dt)
            terms.append(b.emit("mul", (wv, xv), dt))
    st.reduce.append(("sum", _pairwise_sum(b, terms, dt)))
    ctx.register_result(g, n, 0, 0)
    ctx.note_reads(g, em.loads)
    _epilogue_stage(ctx, g, n, frontier)


def _pairwise_sum(b, terms, dt):
    """The sum of `terms` as a balanced tree: a chain of 25 dependent adds per output
    vector kept the vector unit waiting on each add's latency."""
    while len(terms) > 1:
        pairs = [b.emit("add", (terms[k], terms[k + 1]), dt) for k in range(0, len(terms) - 1, 2)]
        terms = pairs + terms[len(terms) - len(terms) % 2:]
    return terms[0]


def _epilogue_stage(ctx, g, n, frontier):
    """The frontier values other than n itself (bias, relu, ...) computed from n's
    result in a map stage of g, stored where the fusion plan wants them."""
    rest = [f for f in frontier if f is not n]
    if not rest:
        return
    g.inline |= {id(f) for f in rest}
    st = g.new_stage((), "map")
    b, em = st.body, st.emitter
    idx = tuple(b.idx(k) for k in range(4))
    written = set()
    for f in rest:
        v = em.value(f, idx)
        for bb in ctx.store_bufs[id(f)]:
            st.stores.append(ctx.store(b, bb, idx, v))
            written.add(bb)
        g.members.append(f)
    ctx.note_reads(g, em.loads)
    ctx.note_writes(g, written)


def lower_taps_grad_filter(ctx, n, x, gy, geo):
    """conv2d_grad_filter n: per example, at every filter element (o, c, i, j), the sum
    over (oh, ow) of gy x the shifted input at the tap; then the sum over examples.
    Example by example, the rows a filter element reads (gy's channel, the tap
    column's shifted rows: a few KiB) stay in L1 across the KH x KW taps; summed over
    the whole batch at once, each element streamed the batch's rows from L2 again."""
    dt = n.dtype
    xs = _shifted_rows(ctx, n, x, geo, dt)
    part = ctx.add_buffer("t_dw", TensorType(dt, (geo["N"],) + tuple(n.shape)), "temp", n)
    g = ctx.new_group((geo["N"],) + tuple(n.shape))
    st = g.new_stage((geo["OH"], geo["OW"]), "reduce")
    b, em = st.body, st.emitter
    vn, vo, vc, vi, vj, oh, ow = (b.idx(k) for k in range(7))
    row = b.iadd(b.imul(oh, b.iconst(geo["sh"])), b.imul(vi, b.iconst(geo["dh"])))
    xv = em.load(xs, (vj, vn, _channel(b, geo, vo, vc), row, ow))
    gv = b.cast(em.value(gy, (vn, vo, oh, ow)), dt)
    st.reduce.append(("sum", b.emit("mul", (gv, xv), dt)))
    out = g.new_stage((), "map")
    ob = out.body
    out.stores.append(Store(part, tuple(ob.idx(k) for k in range(5)), ob.emit("result", (), dt, stage=0, slot=0)))
    g.members.append(n)
    ctx.note_reads(g, em.loads)
    ctx.note_writes(g, {part})
    # the sum over examples, registered as n's value: the SGD step joins it
    total = ctx.new_group(tuple(n.shape))
    ts = total.new_stage((geo["N"],), "reduce")
    tb = ts.body
    index = tuple(tb.idx(k) for k in range(5))
    ts.reduce.append(("sum", ts.emitter.load(part, index[4:] + index[:4])))
    ctx.register_result(total, n, 0, 0)
    ctx.note_reads(total, ts.emitter.loads)


def lower_taps_grad_input(ctx, n, gy, w, geo):
    """conv2d_grad_input n: at every input point (n, c, h, w), the sum over the group's
    Og output channels (an inner loop) and the taps (written out) whose window covers
    the point, of gy x w, masked where the window does not exist (conv.py's col2im
    with the product's column entries computed in place)."""
    dt = n.dtype
    Og, Cg = geo["Og"], geo["Cg"]
    g = ctx.new_group(tuple(n.shape))
    st = g.new_stage((Og,), "reduce")
    b, em = st.body, st.emitter
    vn, vc, vh, vw, vo = (b.idx(k) for k in range(5))
    if geo["G"] == 1:
        o, ci = vo, vc
    else:
        o = b.iadd(b.imul(b.ifloordiv(vc, b.iconst(Cg)), b.iconst(Og)), vo)
        ci = b.imod(vc, b.iconst(Cg))
    rows = [tap_source(b, vh, geo["H"], geo["pt"], i, geo["dh"], geo["sh"], geo["OH"]) for i in range(geo["KH"])]
    cols = [tap_source(b, vw, geo["W"], geo["pl"], j, geo["dw"], geo["sw"], geo["OW"]) for j in range(geo["KW"])]
    terms = []
    for i, (oh, okh) in enumerate(rows):
        for j, (ow, okw) in enumerate(cols):
            gv = masked_value(em, gy, (vn, o, oh, ow), b.land(okh, okw), dt, 0)
            wv = b.cast(em.value(w, (o, ci, b.iconst(i), b.iconst(j))), dt)
            terms.append(b.emit("mul", (wv, gv), dt))
    st.reduce.append(("sum", _pairwise_sum(b, terms, dt)))
    ctx.register_result(g, n, 0, 0)
    ctx.note_reads(g, em.loads)
