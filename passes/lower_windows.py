"""Lowering of the windowed ops: conv2d and its gradients, pooling and its gradients.

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
- pooling: one reduce stage over the window (max, or a sum of x / divisor); the
  selection and the gradients use an argmax stage (first maximum in row-major
  window order, as the graph op) and gathers over the windows that cover a point.
  Windows of up to UNROLL_TAPS taps are written out (reduce stages over an empty
  inner domain: the output row is the innermost loop). max_pool2d_grad whose
  windows tile the input (stride = kernel, no padding, nothing left over) is one
  map kernel over the windows: first maximum found in the body, the cotangent
  stored at it and zeros at the window's other taps.

Results of the last reduce stage are registered like a reduction's, so elementwise
consumers join these kernels as later stages.
"""
from __future__ import annotations

from nngraph.types import TensorType

from .lower_ops import py_scalar
from .program import MatmulKernel, Stage, Store


def _ceil(a, b):
    return -(-a // b)


def _lowest(dtype):
    import numpy as np
    dt = np.dtype(dtype)
    return float("-inf") if dt.kind == "f" else int(np.iinfo(dt).min)


def _in_range(b, v, hi):
    return b.land(b.emit("greater_equal", (v, b.iconst(0)), "bool"), b.emit("less", (v, b.iconst(hi)), "bool"))


# windows with at most this many taps are unrolled into one point's body (a reduce
# stage over an empty inner domain), so the innermost loop is the output's last axis,
# contiguous in memory, and vectorises; larger windows keep an inner loop over the taps
UNROLL_TAPS = 64


def _range_mask(b, v, lo, hi, size):
    """The mask 0 <= v < size for an index v known to lie in [lo, hi] (ints, or None
    when unknown); None when it always holds, so no mask blocks the vectoriser."""
    if isinstance(size, int) and lo is not None and hi is not None and lo >= 0 and hi < size:
        return None
    ge = None if (lo is not None and lo >= 0) else b.emit("greater_equal", (v, b.iconst(0)), "bool")
    lt = None if (isinstance(size, int) and hi is not None and hi < size) else \
        b.emit("less", (v, b.isize(size)), "bool")
    return b.land(ge, lt)


def _span(size):
    """[0, size - 1] for a static size, else (0, None)."""
    return (0, size - 1) if isinstance(size, int) else (0, None)


def _const(b, v, dtype):
    return b.emit("const", (), dtype, value=py_scalar(v, dtype))


def _masked_value(low, em, node, idx, mask, dtype, fill):
    b = em.body
    v = b.cast(em.value(node, idx, mask), dtype)
    return v if mask is None else b.emit("where", (mask, v, _const(b, fill, dtype)), dtype)


def _register_result(low, g, n, stage_no, slot):
    g.results[id(n)] = (stage_no, slot, list(range(n.ndim)))
    g.members.append(n)
    low.group_of[id(n)] = g
    low.note_writes(g, low.store_bufs[id(n)])


def _finish(low, g, em):
    low.note_reads(g, em.loads)


# ----------------------------------------------------------------------------- convolution


def _geometry(n, x_shape, w_shape, out_hw):
    a = n.attrs
    G = a["groups"]
    O, Cg, KH, KW = w_shape
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    return dict(G=G, O=O, Og=O // G, Cg=Cg, KH=KH, KW=KW, K=Cg * KH * KW, sh=sh, sw=sw, pt=pt, pl=pl,
                dh=dh, dw=dw, N=x_shape[0], H=x_shape[2], W=x_shape[3], OH=out_hw[0], OW=out_hw[1],
                P=out_hw[0] * out_hw[1])


def _im2col(low, n, x, geo, dtype):
    """cols[N, G, K, P]: x's windows, K = (c, i, j) and P = (oh, ow) row-major.
    The same windows of the same x are written once: the filter gradient reuses the
    forward conv's cols (the memory plan keeps them alive until their last reader)."""
    key = (id(x), dtype) + tuple(sorted(geo.items()))
    cache = low.__dict__.setdefault("_im2col_cols", {})
    if key not in cache:
        cache[key] = _im2col_kernel(low, n, x, geo, dtype)
    return cache[key]


def _im2col_kernel(low, n, x, geo, dtype):
    """The loop runs over (N, G, K, OH, OW): the innermost axis steps along a row of x
    and of cols without a divide, so it vectorises."""
    N, G, K, P, OH, OW = geo["N"], geo["G"], geo["K"], geo["P"], geo["OH"], geo["OW"]
    cols = low.add_buffer("cols", TensorType(dtype, (N, G, K, P)), "temp", n)
    g = low.new_group((N, G, K, OH, OW))
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
    mask = b.land(_range_mask(b, hh, h_lo, h_hi, geo["H"]), _range_mask(b, ww, w_lo, w_hi, geo["W"]))
    v = _masked_value(low, em, x, (vn, c, hh, ww), mask, dtype, 0)
    st.stores.append(Store(cols, (vn, vg, vk, b.iadd(b.imul(oh, b.iconst(OW)), ow)), v))
    g.members.append(n)
    _finish(low, g, em)
    low.note_writes(g, {cols})
    return cols


def lower_conv2d(low, n):
    x, w = n.inputs
    geo = _geometry(n, x.shape, w.shape, n.shape[2:])
    dt = n.dtype
    N, G, Og, K, P = geo["N"], geo["G"], geo["Og"], geo["K"], geo["P"]
    cols = _im2col(low, n, x, geo, dt)
    wv = low.view(low.operand_buffer(w, dt), (G, Og, K))
    frontier = low.plan.epilogue.get(id(n), [n])
    stores = [(f, bb) for f in frontier for bb in low.store_bufs[id(f)]]
    base = next((bb for f, bb in stores if low.buffers[bb].dtype == dt and tuple(low.buffers[bb].shape) == tuple(n.shape)), None)
    out = low.view(base, (N, G, Og, P)) if base is not None else \
        low.add_buffer("t_conv", TensorType(dt, (N, G, Og, P)), "temp", n)
    kern = MatmulKernel("k_matmul", wv, cols, out, (N, G), Og, P, K, source=f"conv2d {n.type}@{n.where}")
    g = low.new_group((N, G, Og, P), kern)
    low.note_writes(g, {bb for _, bb in stores} | {out})
    loads = {wv, cols}
    if frontier != [n] or len(stores) > 1 or base is None:
        from .lower_ops import Body, Emitter
        body = Body()
        vn, vg, vo, vp = (body.idx(k) for k in range(4))
        node_idx = (vn, body.iadd(body.imul(vg, body.iconst(Og)), vo),
                    body.ifloordiv(vp, body.iconst(geo["OW"])), body.imod(vp, body.iconst(geo["OW"])))
        em = Emitter(body, low.buf_of, low.buffers, outer=node_idx, inline={id(f) for f in frontier},
                     forbid=g.writes, acc=(n, node_idx))
        st = Stage((), body.instrs, (), [])
        for f in frontier:
            v = em.value(f, node_idx)
            for bb in low.store_bufs[id(f)]:
                st.stores.append(Store(bb, low._store_index(body, bb, node_idx), v))
        from .lowering import compact
        kern.epilogue = compact(st)
        loads |= em.loads
    g.members = list(frontier)
    low.note_reads(g, loads)


def lower_conv2d_grad_input(low, n):
    gy, w = n.inputs
    H, W = n.attrs["input_hw"]
    geo = _geometry(n, (n.shape[0], n.shape[1], H, W), w.shape, gy.shape[2:])
    dt = n.dtype
    N, G, Og, K, P, Cg, KH, KW = (geo[k] for k in ("N", "G", "Og", "K", "P", "Cg", "KH", "KW"))
    wv = low.view(low.operand_buffer(w, dt), (G, Og, K))
    gv = low.view(low.operand_buffer(gy, dt), (N, G, Og, P))
    cols = low.add_buffer("cols", TensorType(dt, (N, G, K, P)), "temp", n)
    g0 = low.new_group((N, G, K, P), MatmulKernel("k_matmul", wv, gv, cols, (N, G), K, P, Og, trans_a=True,
                                                  source=f"conv2d_grad_input {n.type}@{n.where}"))
    low.note_writes(g0, {cols})
    low.note_reads(g0, {wv, gv})
    g0.members = [n]
    if KH * KW <= UNROLL_TAPS:
        _col2im_unrolled(low, n, cols, geo, dt)
        return
    # col2im: a gather over the KH x KW taps
    g = low.new_group(tuple(n.shape))
    st = g.new_stage((KH, KW), "reduce")
    b = st.body
    vn, vc, vh, vw, vi, vj = (b.idx(k) for k in range(6))
    hp = b.isub(b.iadd(vh, b.iconst(geo["pt"])), b.imul(vi, b.iconst(geo["dh"])))
    wp = b.isub(b.iadd(vw, b.iconst(geo["pl"])), b.imul(vj, b.iconst(geo["dw"])))
    oh, ow = b.ifloordiv(hp, b.iconst(geo["sh"])), b.ifloordiv(wp, b.iconst(geo["sw"]))
    ok = b.land(b.land(_in_range(b, hp, geo["OH"] * geo["sh"]), _in_range(b, wp, geo["OW"] * geo["sw"])),
                b.land(b.emit("equal", (b.imod(hp, b.iconst(geo["sh"])), b.iconst(0)), "bool"),
                       b.emit("equal", (b.imod(wp, b.iconst(geo["sw"])), b.iconst(0)), "bool")))
    ok = b.land(ok, b.land(b.emit("less", (oh, b.iconst(geo["OH"])), "bool"),
                           b.emit("less", (ow, b.iconst(geo["OW"])), "bool")))
    grp = b.ifloordiv(vc, b.iconst(Cg))
    k = b.iadd(b.imul(b.imod(vc, b.iconst(Cg)), b.iconst(KH * KW)), b.iadd(b.imul(vi, b.iconst(KW)), vj))
    p = b.iadd(b.imul(oh, b.iconst(geo["OW"])), ow)
    v = st.emitter.load(cols, (vn, grp, k, p), ok)
    v = b.emit("where", (ok, v, _const(b, 0, dt)), dt)
    st.reduce.append(("sum", v))
    _register_result(low, g, n, 0, 0)
    _finish(low, g, st.emitter)


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


def _col2im_unrolled(low, n, cols, geo, dt):
    """col2im as one point's sum over the KH x KW taps, written out: at every input
    point (n, c, h, w) each tap reads one column entry, masked where the window does
    not exist; along w those entries are contiguous, so the w loop vectorises with
    masked loads (the mask of a tap's row is uniform along it)."""
    Cg, KH, KW, OW = geo["Cg"], geo["KH"], geo["KW"], geo["OW"]
    g = low.new_group(tuple(n.shape))
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
    _register_result(low, g, n, 0, 0)
    _finish(low, g, st.emitter)


def lower_conv2d_grad_filter(low, n):
    x, gy = n.inputs
    geo = _geometry(n, x.shape, n.shape, gy.shape[2:])
    dt = n.dtype
    N, G, Og, K, P, Cg, KH, KW = (geo[k] for k in ("N", "G", "Og", "K", "P", "Cg", "KH", "KW"))
    # cols in the forward conv's [N, G, K, P] layout (its im2col writes P innermost, which
    # vectorises; the [P, K] layout did not) and the product takes it transposed
    cols = _im2col(low, n, x, geo, dt)
    gv = low.view(low.operand_buffer(gy, dt), (N, G, Og, P))
    part = low.add_buffer("t_dw_per_example", TensorType(dt, (N, G, Og, K)), "temp", n)
    g0 = low.new_group((N, G, Og, K), MatmulKernel("k_matmul", gv, cols, part, (N, G), Og, K, P, trans_b=True,
                                                   source=f"conv2d_grad_filter {n.type}@{n.where}"))
    low.note_writes(g0, {part})
    low.note_reads(g0, {gv, cols})
    g0.members = [n]
    g = low.new_group(tuple(n.shape))
    st = g.new_stage((N,), "reduce")
    b = st.body
    vo, vc, vi, vj, vn = (b.idx(k) for k in range(5))
    k = b.iadd(b.imul(vc, b.iconst(KH * KW)), b.iadd(b.imul(vi, b.iconst(KW)), vj))
    v = st.emitter.load(part, (vn, b.ifloordiv(vo, b.iconst(Og)), b.imod(vo, b.iconst(Og)), k))
    st.reduce.append(("sum", v))
    _register_result(low, g, n, 0, 0)
    _finish(low, g, st.emitter)


# ----------------------------------------------------------------------------- pooling


def _window(b, geo_pool, vh, vw, vi, vj):
    """Input coordinates of tap (i, j) of output window (oh, ow), and whether it is real."""
    (sh, sw), (pt, pl), (H, W) = geo_pool["stride"], geo_pool["pad"], geo_pool["hw"]
    hh = b.isub(b.iadd(b.imul(vh, b.iconst(sh)), vi), b.iconst(pt))
    ww = b.isub(b.iadd(b.imul(vw, b.iconst(sw)), vj), b.iconst(pl))
    return hh, ww, b.land(_in_range(b, hh, H), _in_range(b, ww, W))


def _tap(b, geo, vh, vw, i, j):
    """_window for a tap (i, j) known when lowering: masks that always hold are dropped."""
    (sh, sw), (pt, pl), (H, W), (OH, OW) = geo["stride"], geo["pad"], geo["hw"], geo["out_hw"]
    hh = b.isub(b.iadd(b.imul(vh, b.iconst(sh)), b.iconst(i)), b.iconst(pt))
    ww = b.isub(b.iadd(b.imul(vw, b.iconst(sw)), b.iconst(j)), b.iconst(pl))
    h_hi = (OH - 1) * sh + i - pt if isinstance(OH, int) else None
    w_hi = (OW - 1) * sw + j - pl if isinstance(OW, int) else None
    return hh, ww, b.land(_range_mask(b, hh, i - pt, h_hi, H), _range_mask(b, ww, j - pl, w_hi, W))


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
        return _const(b, kh * kw, dtype)
    (sh, sw), (pt, pl), (H, W) = geo["stride"], geo["pad"], geo["hw"]
    h0 = b.isub(b.imul(vh, b.iconst(sh)), b.iconst(pt))
    w0 = b.isub(b.imul(vw, b.iconst(sw)), b.iconst(pl))
    rows = b.isub(b.emit("minimum", (b.iadd(h0, b.iconst(kh)), b.iconst(H)), "int64"),
                  b.emit("maximum", (h0, b.iconst(0)), "int64"))
    cols = b.isub(b.emit("minimum", (b.iadd(w0, b.iconst(kw)), b.iconst(W)), "int64"),
                  b.emit("maximum", (w0, b.iconst(0)), "int64"))
    return b.cast(b.imul(rows, cols), dtype)


def _first_max(low, em, x, geo, vn, vc, vh, vw):
    """The window's first maximum, taps written out in row-major order: (value, tap
    number), with the argmax reduction's rule (a larger value, or the first NaN)."""
    b = em.body
    kh, kw = geo["kernel"]
    isf = x.dtype in ("float16", "float32", "float64")
    best = pos = None
    for i in range(kh):
        for j in range(kw):
            hh, ww, ok = _tap(b, geo, vh, vw, i, j)
            v = _masked_value(low, em, x, (vn, vc, hh, ww), ok, x.dtype, _lowest(x.dtype))
            t = b.iconst(i * kw + j)
            if best is None:
                best, pos = v, t
                continue
            better = b.emit("greater", (v, best), "bool")
            if isf:
                better = b.emit("logical_or", (better, b.land(b.emit("not_equal", (v, v), "bool"),
                                                             b.emit("equal", (best, best), "bool"))), "bool")
            best = b.emit("where", (better, v, best), x.dtype)
            pos = b.emit("where", (better, t, pos), "int64")
    return best, pos


def _argmax_stage(low, g, x, geo, dtype):
    kh, kw = geo["kernel"]
    if _unrolled(geo):
        st = g.new_stage((), "reduce")
        b = st.body
        vn, vc, vh, vw = (b.idx(k) for k in range(4))
        best, pos = _first_max(low, st.emitter, x, geo, vn, vc, vh, vw)
        st.reduce.append(("argmax", best, pos))
        _finish(low, g, st.emitter)
        return st
    st = g.new_stage((kh, kw), "reduce")
    b = st.body
    vn, vc, vh, vw, vi, vj = (b.idx(k) for k in range(6))
    hh, ww, ok = _window(b, geo, vh, vw, vi, vj)
    v = _masked_value(low, st.emitter, x, (vn, vc, hh, ww), ok, x.dtype, _lowest(x.dtype))
    st.reduce.append(("argmax", v, b.iadd(b.imul(vi, b.iconst(kw)), vj)))
    _finish(low, g, st.emitter)
    return st


def lower_pool(low, n):
    (x,) = n.inputs
    geo = _pool_geo(n, x.shape, n.shape[2:])
    kh, kw = geo["kernel"]
    g = low.new_group(tuple(n.shape))
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
                v = _masked_value(low, st.emitter, x, (vn, vc, hh, ww), ok, n.dtype, _lowest(n.dtype) if mx else 0)
                total = v if total is None else b.emit("maximum" if mx else "add", (total, v), n.dtype)
        if mx:
            st.reduce.append(("max", total))
        else:
            st.reduce.append(("sum", b.emit("div", (total, _divisor(b, n, geo, vh, vw, n.dtype)), n.dtype)))
        _register_result(low, g, n, 0, 0)
        _finish(low, g, st.emitter)
        return
    st = g.new_stage((kh, kw), "reduce")
    b = st.body
    vn, vc, vh, vw, vi, vj = (b.idx(k) for k in range(6))
    hh, ww, ok = _window(b, geo, vh, vw, vi, vj)
    if n.op == "max_pool2d":
        v = _masked_value(low, st.emitter, x, (vn, vc, hh, ww), ok, n.dtype, _lowest(n.dtype))
        st.reduce.append(("max", v))
    else:
        v = _masked_value(low, st.emitter, x, (vn, vc, hh, ww), ok, n.dtype, 0)
        st.reduce.append(("sum", b.emit("div", (v, _divisor(b, n, geo, vh, vw, n.dtype)), n.dtype)))
    _register_result(low, g, n, 0, 0)
    _finish(low, g, st.emitter)


def lower_max_select(low, n):
    x, h = n.inputs
    geo = _pool_geo(n, x.shape, n.shape[2:])
    kh, kw = geo["kernel"]
    g = low.new_group(tuple(n.shape))
    _argmax_stage(low, g, x, geo, n.dtype)
    st = g.new_stage((), "map")
    b = st.body
    vn, vc, vh, vw = (b.idx(k) for k in range(4))
    pos = b.emit("result", (), "int64", stage=0, slot=0)
    hh, ww, ok = _window(b, geo, vh, vw, b.ifloordiv(pos, b.iconst(kw)), b.imod(pos, b.iconst(kw)))
    v = _masked_value(low, st.emitter, h, (vn, vc, hh, ww), ok, n.dtype, 0)
    for bb in low.store_bufs[id(n)]:
        st.stores.append(Store(bb, (vn, vc, vh, vw), v))
    g.members.append(n)
    low.note_writes(g, low.store_bufs[id(n)])
    _finish(low, g, st.emitter)


def _gather_windows(b, geo, vh, vw, va, vb):
    """Candidate output window (oh, ow) number (a, b) covering input point (h, w), the
    tap position inside it, and whether it exists."""
    (sh, sw), (pt, pl) = geo["stride"], geo["pad"]
    kh, kw = geo["kernel"]
    hp, wp = b.iadd(vh, b.iconst(pt)), b.iadd(vw, b.iconst(pl))
    oh = b.isub(b.ifloordiv(hp, b.iconst(sh)), va)
    ow = b.isub(b.ifloordiv(wp, b.iconst(sw)), vb)
    ti, tj = b.isub(hp, b.imul(oh, b.iconst(sh))), b.isub(wp, b.imul(ow, b.iconst(sw)))
    ok = b.land(b.land(_in_range(b, oh, geo["out_hw"][0]), _in_range(b, ow, geo["out_hw"][1])),
                b.land(b.emit("less", (ti, b.iconst(kh)), "bool"), b.emit("less", (tj, b.iconst(kw)), "bool")))
    return oh, ow, ti, tj, ok


def _tiles(geo):
    """Do the windows tile the input exactly (stride = kernel, no padding, nothing left
    over)? Then every input point lies in exactly one window."""
    (kh, kw), (sh, sw), (pt, pl), (H, W), (OH, OW) = (geo["kernel"], geo["stride"], geo["pad"], geo["hw"],
                                                      geo["out_hw"])
    return ((kh, kw) == (sh, sw) and (pt, pl) == (0, 0) and all(isinstance(v, int) for v in (H, W, OH, OW))
            and H == OH * kh and W == OW * kw)


def _max_pool_grad_tiled(low, n, x, gy, geo):
    """max_pool2d_grad when the windows tile the input: one map kernel over the windows
    finds each window's first maximum (taps written out) and writes the window's
    cotangent there and zeros at its other taps, so no argmax buffer, no gather."""
    kh, kw = geo["kernel"]
    dt = n.dtype
    g = low.new_group(tuple(gy.shape))
    st = g.new_stage((), "map")
    b, em = st.body, st.emitter
    vn, vc, vh, vw = (b.idx(k) for k in range(4))
    _, pos = _first_max(low, em, x, geo, vn, vc, vh, vw)
    v = b.cast(em.value(gy, (vn, vc, vh, vw)), dt)
    zero = _const(b, 0, dt)
    for i in range(kh):
        for j in range(kw):
            hh, ww, _ = _tap(b, geo, vh, vw, i, j)
            out = b.emit("where", (b.emit("equal", (pos, b.iconst(i * kw + j)), "bool"), v, zero), dt)
            for bb in low.store_bufs[id(n)]:
                st.stores.append(Store(bb, (vn, vc, hh, ww), out))
    g.members.append(n)
    low.note_writes(g, low.store_bufs[id(n)])
    _finish(low, g, em)


def lower_pool_grad(low, n):
    if n.op == "max_pool2d_grad":
        x, gy = n.inputs
        geo = _pool_geo(n, x.shape, gy.shape[2:])
        if _tiles(geo) and _unrolled(geo):
            _max_pool_grad_tiled(low, n, x, gy, geo)
            return
        # kernel A: the first maximum's position in every window
        pos_buf = low.add_buffer("t_argmax", TensorType("int64", tuple(gy.shape)), "temp", n)
        ga = low.new_group(tuple(gy.shape))
        _argmax_stage(low, ga, x, geo, n.dtype)
        sa = ga.new_stage((), "map")
        sa.stores.append(Store(pos_buf, tuple(sa.body.idx(k) for k in range(4)),
                               sa.body.emit("result", (), "int64", stage=0, slot=0)))
        ga.members.append(n)
        low.note_writes(ga, {pos_buf})
    else:
        (gy,) = n.inputs
        geo = _pool_geo(n, n.shape, gy.shape[2:])
    kh, kw = geo["kernel"]
    (sh, sw) = geo["stride"]
    g = low.new_group(tuple(n.shape))
    na, nb = _ceil(kh, sh), _ceil(kw, sw)
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
        v = b.emit("where", (ok, v, _const(b, 0, n.dtype)), n.dtype)
        total = v if total is None else b.emit("add", (total, v), n.dtype)
    st.reduce.append(("sum", total))
    _register_result(low, g, n, 0, 0)
    _finish(low, g, st.emitter)


LOWER = {
    "conv2d": lower_conv2d,
    "conv2d_grad_input": lower_conv2d_grad_input,
    "conv2d_grad_filter": lower_conv2d_grad_filter,
    "max_pool2d": lower_pool,
    "avg_pool2d": lower_pool,
    "max_pool2d_select": lower_max_select,
    "max_pool2d_grad": lower_pool_grad,
    "avg_pool2d_grad": lower_pool_grad,
}
