"""Line charts as SVG, drawn here (no plotting library): the training report's
loss, metric, learning-rate and step-time curves."""
from __future__ import annotations

import math
from html import escape

COLOURS = ("#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b")
MAX_POINTS = 800
W, H, LEFT, RIGHT, TOP, BOTTOM = 420, 250, 56, 12, 40, 34


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list:
    """About n round tick values covering [lo, hi] (whole numbers when `integer`)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    if integer:
        step = max(1, round(step))
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def _thin(xs: list, ys: list) -> tuple:
    """At most MAX_POINTS points: the mean of each bucket of consecutive points."""
    if len(ys) <= MAX_POINTS:
        return xs, ys
    k = math.ceil(len(ys) / MAX_POINTS)
    bx = [sum(xs[i:i + k]) / len(xs[i:i + k]) for i in range(0, len(xs), k)]
    by = [sum(ys[i:i + k]) / len(ys[i:i + k]) for i in range(0, len(ys), k)]
    return bx, by


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v == 0 or 1e-3 <= abs(v) < 1e4 else f"{v:.1e}"


def line_chart(title: str, series: dict, xlabel: str, x_start: float = 1.0) -> str:
    """series: name -> list of y values (x = x_start, x_start + 1, ...); non-finite
    values are left out. Returns a <div class="chart"> holding the SVG."""
    pts = {}
    for name, ys in series.items():
        xy = [(x_start + i, float(y)) for i, y in enumerate(ys) if y is not None and math.isfinite(float(y))]
        if xy:
            pts[name] = _thin([p[0] for p in xy], [p[1] for p in xy])
    if not pts:
        return f'<div class="chart"><p class=muted>{escape(title)}: no values</p></div>'
    allx = [x for xs, _ in pts.values() for x in xs]
    ally = [y for _, ys in pts.values() for y in ys]
    x0, x1 = min(allx), max(allx) if max(allx) > min(allx) else min(allx) + 1
    yt = nice_ticks(min(ally), max(ally))
    y0, y1 = yt[0], yt[-1] if yt[-1] > yt[0] else yt[0] + 1

    def px(x):
        return LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def py(y):
        return H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">',
           f'<text x="{W / 2}" y="16" style="font:bold 12px sans-serif;text-anchor:middle">{escape(title)}</text>']
    for t in yt:
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e0e0e0"/>'
                   f'<text x="{LEFT - 4}" y="{py(t) + 4:.1f}" style="font:10px sans-serif;text-anchor:end">'
                   f"{_fmt(t)}</text>")
    for t in nice_ticks(x0, x1, 6, integer=True):
        if x0 <= t <= x1:
            out.append(f'<text x="{px(t):.1f}" y="{H - BOTTOM + 14}" style="font:10px sans-serif;'
                       f'text-anchor:middle">{_fmt(t)}</text>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" style="font:11px sans-serif;text-anchor:middle">'
               f"{escape(xlabel)}</text>")
    out.append(f'<path d="M{LEFT} {TOP}V{H - BOTTOM}H{W - RIGHT}" fill="none" stroke="#607d8b"/>')
    for j, (name, (xs, ys)) in enumerate(pts.items()):
        c = COLOURS[j % len(COLOURS)]
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
        out.append(f'<polyline class="series" points="{d}" fill="none" stroke="{c}" stroke-width="1.8"/>')
        if len(xs) <= 60:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.4" fill="{c}"/>' for x, y in zip(xs, ys)]
        out.append(f'<text x="{LEFT + 150 * j}" y="{TOP - 8}" style="font:11px sans-serif;fill:{c}">'
                   f"— {escape(name)}</text>")
    out.append("</svg>")
    return '<div class="chart">' + "".join(out) + "</div>"
