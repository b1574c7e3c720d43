"""Helpers shared by the windowed families (passes/lower/conv.py, pool.py): index
ranges, masks that are left out when they always hold, masked values."""
from __future__ import annotations

from .body import py_scalar

# windows with at most this many taps are unrolled into one point's body (a reduce
# stage over an empty inner domain), so the innermost loop is the output's last axis,
# contiguous in memory, and vectorises; larger windows keep an inner loop over the taps
UNROLL_TAPS = 64


def window_span(geo, axis: str) -> int:
    """Input positions, padding included, from the first window's first tap to the
    last window's last tap along `axis` ("h" or "w") of a conv geometry
    (passes/lower/conv.py): (O - 1)*stride + (K - 1)*dilation + 1."""
    o, k, s, d = ("OH", "KH", "sh", "dh") if axis == "h" else ("OW", "KW", "sw", "dw")
    return (geo[o] - 1) * geo[s] + (geo[k] - 1) * geo[d] + 1


def ceil_div(a, b):
    return -(-a // b)


def in_range(b, v, hi):
    """The mask 0 <= v < hi."""
    return b.land(b.emit("greater_equal", (v, b.iconst(0)), "bool"), b.emit("less", (v, b.iconst(hi)), "bool"))


def range_mask(b, v, lo, hi, size):
    """The mask 0 <= v < size for an index v known to lie in [lo, hi] (ints, or None
    when unknown); None when it always holds, so no mask blocks the vectoriser."""
    if isinstance(size, int) and lo is not None and hi is not None and lo >= 0 and hi < size:
        return None
    ge = None if (lo is not None and lo >= 0) else b.emit("greater_equal", (v, b.iconst(0)), "bool")
    lt = None if (isinstance(size, int) and hi is not None and hi < size) else \
        b.emit("less", (v, b.isize(size)), "bool")
    return b.land(ge, lt)


def const(b, v, dtype):
    return b.emit("const", (), dtype, value=py_scalar(v, dtype))


def masked_value(em, node, idx, mask, dtype, fill):
    """node at idx as dtype, `fill` where mask (None: always real) is false."""
    b = em.body
    v = b.cast(em.value(node, idx, mask), dtype)
    return v if mask is None else b.emit("where", (mask, v, const(b, fill, dtype)), dtype)


def tap_source(b, v, size, pad, tap, dil, stride, out):
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
