"""A layered layout of a DAG, ours (no Graphviz): rows of nodes, edges pointing down.

Rows come from networkx's topological generations of the graph without its
sources (placeholders, parameters, constants), so a computation is one row below
its deepest operand; each source sits one row above its first user instead of
all crowding row 0. Within a row, nodes are ordered by the mean position of
their operands (a few barycentre sweeps down and up), which keeps most edges
short and uncrossed. Linear in the graph's size per sweep: a few thousand nodes
lay out in well under a second.

Nodes are all node_w x node_h except those `sizes` names (a scan drawn as a box
holding its body): a row is as tall as its tallest node, and a wide node pushes its
right neighbours along.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

SWEEPS = 4
GAP_X, GAP_Y = 16.0, 44.0   # between neighbours in a row, between rows


@dataclass
class Layout:
    pos: dict          # key -> (x, y) centre, in layout units
    rows: list         # row index -> keys left to right
    width: float
    height: float


def layered(keys: list, edges: list, is_source, node_w=120.0, node_h=28.0, gap_x=GAP_X, gap_y=GAP_Y,
            sizes: dict | None = None) -> Layout:
    """keys: node keys in topological order; edges: (from, to) pairs; is_source(key);
    sizes: key -> (width, height) for nodes not of the default size."""
    g = nx.DiGraph()
    g.add_nodes_from(keys)
    g.add_edges_from(edges)
    inner = g.subgraph([k for k in keys if not is_source(k)])
    row = {}
    for r, gen in enumerate(nx.topological_generations(inner)):
        for k in gen:
            row[k] = r + 1
    for k in keys:
        if k not in row:
            users = [row[u] for u in g.successors(k) if u in row]
            row[k] = min(users) - 1 if users else 0
    n_rows = max(row.values(), default=0) + 1
    rows = [[] for _ in range(n_rows)]
    for k in keys:
        rows[row[k]].append(k)
    rows = [r for r in rows if r]
    _order(rows, g)
    return _place(rows, sizes or {}, node_w, node_h, gap_x, gap_y)


def _place(rows: list, sizes: dict, node_w, node_h, gap_x, gap_y) -> Layout:
    """Centres of the ordered rows, left to right and top to bottom."""
    pos, width, top = {}, 0.0, 0.0
    for r in rows:
        row_h = max(sizes.get(k, (node_w, node_h))[1] for k in r)
        left = 0.0
        for k in r:
            w = sizes.get(k, (node_w, node_h))[0]
            pos[k] = (left + w / 2, top + row_h / 2)
            left += w + gap_x
        width = max(width, left)
        top += row_h + gap_y
    return Layout(pos, rows, width, top)   # both with one trailing gap


def _order(rows: list, g: nx.DiGraph) -> None:
    """Barycentre ordering, in place: down sweeps by predecessors, up by successors."""
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        seq = range(1, len(rows)) if down else range(len(rows) - 2, -1, -1)
        for i in seq:
            ref = {k: x for x, k in enumerate(rows[i - 1 if down else i + 1])}
            nbrs = g.predecessors if down else g.successors
            keyed = []
            for x, k in enumerate(rows[i]):
                xs = [ref[n] for n in nbrs(k) if n in ref]
                keyed.append((sum(xs) / len(xs) if xs else x, x, k))
            keyed.sort(key=lambda t: (t[0], t[1]))
            rows[i] = [k for _, _, k in keyed]
