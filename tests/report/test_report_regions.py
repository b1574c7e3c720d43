"""Nodes that hold a graph (a scan and its body) are drawn as boxes holding that
graph: the layout gives such a node its own size, and the report draws one SVG node
per node of the outer graph and of every body."""
from nngraph.report.layout import layered


def test_layout_gives_a_big_node_its_size_and_moves_its_neighbours():
    # 0 -> 2, 1 -> 2, 2 -> 3; node 0 is a 300 x 100 box, the rest 120 x 28
    lay = layered([0, 1, 2, 3], [(0, 2), (1, 2), (2, 3)], lambda k: False, 120, 28, 16, 44, sizes={0: (300, 100)})
    assert lay.rows == [[0, 1], [2], [3]]
    (x0, y0), (x1, y1) = lay.pos[0], lay.pos[1]
    assert (x0, x1) == (150, 300 + 16 + 60)             # the box's width pushes its neighbour right
    assert y0 == y1 == 50                                 # the row is as tall as its tallest node
    assert lay.pos[2][1] == 100 + 44 + 14                 # the next row starts below the box
    assert lay.width == 300 + 16 + 120 + 16 and lay.height == (100 + 44) + 2 * (28 + 44)
