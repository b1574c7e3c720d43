"""A graph drawn as SVG: one `<g class="node">` per graph node (its op and IR name),
coloured by the fused kernel that computes it, edges as one path; what hover
shows (op, type, file:line, kernels) travels as a compact JSON table that the
page's script reads, so each node costs about a hundred bytes of markup."""
from __future__ import annotations

from html import escape

from passes.kernel_dag import kernel_dag

from ..textir import value_names
from .layout import layered

NODE_W, NODE_H = 120, 28
SOURCE_FILL = "#eceff1"
UNFUSED_FILL = "#ffffff"
SOURCES = ("placeholder", "parameter", "constant")


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


def _edges_path(lay, edges) -> str:
    parts = []
    for a, b in edges:
        (x1, y1), (x2, y2) = lay.pos[a], lay.pos[b]
        y1, y2 = y1 + NODE_H / 2, y2 - NODE_H / 2
        ym = (y1 + y2) / 2
        parts.append(f"M{x1:.0f} {y1:.0f}C{x1:.0f} {ym:.0f} {x2:.0f} {ym:.0f} {x2:.0f} {y2:.0f}")
    return "".join(parts)


def graph_svg(graph, svg_id: str, kernels_of=None, kernel_names=None) -> tuple[str, list]:
    """(SVG markup, per-node hover rows [IR name, op, type, where, kernels, the node's own
    name (an imported ONNX node's, say) or ""]) of `graph`.
    kernels_of(node) -> schedule positions computing it (None: the graph is drawn
    before fusion, every node plain)."""
    nodes = graph.nodes()
    names = value_names(graph)
    index = {id(n): i for i, n in enumerate(nodes)}
    edges = [(index[id(i)], index[id(n)]) for n in nodes for i in n.inputs]
    lay = layered(list(range(len(nodes))), edges, lambda k: nodes[k].op in SOURCES, NODE_W, NODE_H)
    out = [f'<svg id="{svg_id}" class="graph" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="-10 -10 {lay.width + 20:.0f} {lay.height + 20:.0f}" '
           f'data-w="{lay.width + 20:.0f}" data-h="{lay.height + 20:.0f}">',
           f'<path class="edges" d="{_edges_path(lay, edges)}"/>']
    info = []
    for i, n in enumerate(nodes):
        ks = tuple(kernels_of(n)) if kernels_of is not None else ()
        if n.op in SOURCES:
            fill, cls = SOURCE_FILL, "node src"
        elif ks:
            fill, cls = kernel_colour(ks[0]), f"node k{ks[0]}" + (" multi" if len(ks) > 1 else "")
        else:
            fill, cls = UNFUSED_FILL, "node"
        x, y = lay.pos[i]
        out.append(f'<g class="{cls}" data-i="{i}"><rect x="{x - NODE_W / 2:.0f}" y="{y - NODE_H / 2:.0f}" '
                   f'width="{NODE_W}" height="{NODE_H}" rx="5" fill="{fill}"/>'
                   f'<text x="{x:.0f}" y="{y + 4:.0f}">{escape(_label(n, names[id(n)]))}</text></g>')
        info.append([names[id(n)], n.op, str(n.type), n.where,
                     [kernel_names[k] for k in ks] if kernel_names else [],
                     n.name if n.name and n.op not in SOURCES else ""])
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

