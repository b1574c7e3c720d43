"""A graph drawn as SVG: one `<g class="node">` per graph node (its op and IR name),
coloured by the fused kernel that computes it, edges as one path; what hover
shows (op, type, file:line, kernels) travels as a compact JSON table that the
page's script reads, so each node costs about a hundred bytes of markup."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from passes.kernel_dag import kernel_dag

from ..textir import value_names
from .layout import GAP_X, GAP_Y, layered

NODE_W, NODE_H = 120, 28
SOURCE_FILL = "#eceff1"
UNFUSED_FILL = "#ffffff"
SOURCES = ("placeholder", "parameter", "constant")
REGION_HEAD, REGION_PAD = 26, 12   # a region box: its title row, and the margin round its graph


def kernel_colour(k: int) -> str:
    """A distinct colour per kernel: golden-angle hues, three lightness bands."""
    hue = (k * 137.508) % 360
    light = (78, 68, 86)[k % 3]
    return f"hsl({hue:.1f},70%,{light}%)"


def _label(n, name: str) -> str:
    if n.op == "constant" and n.attrs["value"].array.size == 1:
        text = f"{n.attrs['value'].array.reshape(()).item():.4g}"
    else:
        text = f"{n.op} %{name}" if n.op not in SOURCES else f"%{name}"
    return text if len(text) <= 18 else text[:17] + "…"


def _region_label(n, name: str) -> str:
    """A region box's title: the op, its name and how often the body runs."""
    length = n.attrs.get("length")
    return f"{n.op} %{name}" + (f" · {length} steps" if length is not None else "")


def _edges_path(lay, edges, heights=None, dx=0.0, dy=0.0) -> str:
    parts = []
    for a, b in edges:
        (x1, y1), (x2, y2) = lay.pos[a], lay.pos[b]
        ha, hb = (heights or {}).get(a, NODE_H), (heights or {}).get(b, NODE_H)
        x1, x2, y1, y2 = x1 + dx, x2 + dx, y1 + dy + ha / 2, y2 + dy - hb / 2
        ym = (y1 + y2) / 2
        parts.append(f"M{x1:.0f} {y1:.0f}C{x1:.0f} {ym:.0f} {x2:.0f} {ym:.0f} {x2:.0f} {y2:.0f}")
    return "".join(parts)


def region_of(n):
    """The graph a node holds (a scan's body), or None."""
    body = n.attrs.get("body") if n.attrs else None
    return getattr(body, "graph", None)


@dataclass
class _Plan:
    """A graph laid out, with the plans of the regions its nodes hold."""
    nodes: list
    names: dict
    edges: list
    lay: object
    inner: dict   # node index -> _Plan of its body
    sizes: dict   # node index -> (width, height) of a region box


def _plan(graph) -> _Plan:
    """Lay out `graph`, each region first, so that its box can hold it."""
    nodes = graph.nodes()
    index = {id(n): i for i, n in enumerate(nodes)}
    edges = [(index[id(i)], index[id(n)]) for n in nodes for i in n.inputs]
    inner = {i: _plan(region_of(n)) for i, n in enumerate(nodes) if region_of(n) is not None}
    sizes = {i: (max(2 * NODE_W, p.lay.width - GAP_X + 2 * REGION_PAD),
                 p.lay.height - GAP_Y + REGION_HEAD + REGION_PAD) for i, p in inner.items()}
    lay = layered(list(range(len(nodes))), edges, lambda k: nodes[k].op in SOURCES, NODE_W, NODE_H, sizes=sizes)
    return _Plan(nodes, value_names(graph), edges, lay, inner, sizes)


def _draw(plan: _Plan, dx: float, dy: float, prefix: str, out: list, info: list, kernels_of, kernel_names):
    """Append the markup and hover rows of `plan` drawn at offset (dx, dy); the nodes of
    a region are named after the node that holds it (`5/0`: value 0 of scan %5's body)."""
    heights = {k: h for k, (_, h) in plan.sizes.items()}
    out.append(f'<path class="edges" d="{_edges_path(plan.lay, plan.edges, heights, dx, dy)}"/>')
    for i, n in enumerate(plan.nodes):
        ks = tuple(kernels_of(n)) if kernels_of is not None else ()
        if n.op in SOURCES:
            fill, cls = SOURCE_FILL, "node src"
        elif ks:
            fill, cls = kernel_colour(ks[0]), f"node k{ks[0]}" + (" multi" if len(ks) > 1 else "")
        else:
            fill, cls = UNFUSED_FILL, "node"
        x, y = plan.lay.pos[i]
        x, y = x + dx, y + dy
        w, h = plan.sizes.get(i, (NODE_W, NODE_H))
        name = prefix + plan.names[id(n)]
        label = _label(n, plan.names[id(n)]) if i not in plan.inner else _region_label(n, plan.names[id(n)])
        text_y = y + 4 if i not in plan.inner else y - h / 2 + REGION_HEAD / 2 + 4
        out.append(f'<g class="{cls}{" region" if i in plan.inner else ""}" data-i="{len(info)}">'
                   f'<rect x="{x - w / 2:.0f}" y="{y - h / 2:.0f}" width="{w:.0f}" height="{h:.0f}" rx="5" '
                   f'fill="{fill}"/><text x="{x:.0f}" y="{text_y:.0f}">{escape(label)}</text></g>')
        info.append([name, n.op, str(n.type), n.where,
                     [kernel_names[k] for k in ks] if kernel_names else [],
                     n.name if n.name and n.op not in SOURCES else ""])
        if i in plan.inner:
            _draw(plan.inner[i], x - w / 2 + REGION_PAD, y - h / 2 + REGION_HEAD, name + "/", out, info,
                  kernels_of, kernel_names)


def graph_svg(graph, svg_id: str, kernels_of=None, kernel_names=None) -> tuple[str, list]:
    """(SVG markup, per-node hover rows [IR name, op, type, where, kernels, the node's own
    name (an imported ONNX node's, say) or ""]) of `graph`.
    kernels_of(node) -> schedule positions computing it (None: the graph is drawn
    before fusion, every node plain). A node that holds a graph (a scan and its body)
    is a box with that graph drawn inside it, one `g.node` per body node as well."""
    plan = _plan(graph)
    out = [f'<svg id="{svg_id}" class="graph" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="-10 -10 {plan.lay.width + 20:.0f} {plan.lay.height + 20:.0f}" '
           f'data-w="{plan.lay.width + 20:.0f}" data-h="{plan.lay.height + 20:.0f}">']
    info: list = []
    _draw(plan, 0.0, 0.0, "", out, info, kernels_of, kernel_names)
    out.append("</svg>")
    return "".join(out), info


def kernel_dag_svg(program, svg_id: str) -> str:
    """The collapsed view: one box per kernel (its colour), edges where a kernel
    reads what another wrote."""
    sched = program.schedule
    dag = kernel_dag(dict(enumerate(sched)), program.root)
    edges = sorted(dag.edges())
    lay = layered(list(range(len(sched))), edges, lambda k: False, 190, NODE_H)
    out = [f'<svg id="{svg_id}" class="graph" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="-10 -10 {lay.width + 20:.0f} {lay.height + 20:.0f}" '
           f'data-w="{lay.width + 20:.0f}" data-h="{lay.height + 20:.0f}">',
           f'<path class="edges" d="{_edges_path(lay, edges)}"/>']
    for k, kern in enumerate(sched):
        x, y = lay.pos[k]
        name = kern.name if len(kern.name) <= 28 else kern.name[:27] + "…"
        out.append(f'<g class="kernel k{k}" data-k="{k}"><rect x="{x - 95:.0f}" y="{y - NODE_H / 2:.0f}" '
                   f'width="190" height="{NODE_H}" rx="5" fill="{kernel_colour(k)}"/>'
                   f'<text x="{x:.0f}" y="{y + 4:.0f}">{escape(name)}</text></g>')
    out.append("</svg>")
    return "".join(out)

