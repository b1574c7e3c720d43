"""The loop kernel that writes a direct convolution's input: the phase-split,
zero-padded copy of x that codegen/llvm/conv_direct.py's kernel reads in place of
im2col's window matrix (the layout and its rules: passes/direct_window.py)."""
from __future__ import annotations

from nngraph.types import TensorType

from ..direct_window import DirectWindow
from ..program import Store
from .window import masked_value, range_mask


def emit_phase_copy(ctx, n, x, geo, win: DirectWindow, dtype):
    """The copy (a temp of win.elements()) written by one loop kernel over (C, sh, sw,
    Hq, Wq): masked loads of x give the zero padding; the slack is left unwritten."""
    buf = ctx.add_buffer("xphase", TensorType(dtype, (win.elements(),)), "temp", n)
    domain = (win.C, win.sh, win.sw, win.Hq, win.Wq)
    g = ctx.new_group(domain)
    st = g.new_stage((), "map")
    b, em = st.body, st.emitter
    c, a, bb, i, j = (b.idx(k) for k in range(5))
    hh = b.isub(b.iadd(b.imul(i, b.iconst(win.sh)), a), b.iconst(geo["pt"]))
    ww = b.isub(b.iadd(b.imul(j, b.iconst(win.sw)), bb), b.iconst(geo["pl"]))
    h_hi = (win.Hq - 1) * win.sh + win.sh - 1 - geo["pt"]
    w_hi = (win.Wq - 1) * win.sw + win.sw - 1 - geo["pl"]
    mask = b.land(range_mask(b, hh, -geo["pt"], h_hi, geo["H"]), range_mask(b, ww, -geo["pl"], w_hi, geo["W"]))
    v = masked_value(em, x, (b.iconst(0), c, hh, ww), mask, dtype, 0)
    flat = b.iadd(b.imul(c, b.iconst(win.channel_stride())),
                  b.iadd(b.imul(b.iadd(b.imul(a, b.iconst(win.sw)), bb), b.iconst(win.plane())),
                         b.iadd(b.imul(i, b.iconst(win.Wq)), j)))
    st.stores.append(Store(buf, (flat,), v))
    g.members.append(n)
    ctx.note_reads(g, em.loads)
    ctx.note_writes(g, {buf})
    return buf
