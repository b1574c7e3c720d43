"""Which kernel must run before which: an edge from the kernel that writes a buffer
(its memory, through views) to every other kernel that reads it. Lowering schedules
kernels in a topological order of this graph; sibling fusion merges only kernels
with no path between them. One writer per buffer, so reader-before-writer edges
are never needed (memory planning, which shares memory, comes after)."""
from __future__ import annotations

from .dag import Dag


def kernel_dag(kernels: dict, base) -> Dag:
    """kernels: {number: kernel}; base(buffer) -> the buffer whose memory it is."""
    dag = Dag()
    dag.add_nodes_from(kernels)
    writer = {base(b): no for no, k in kernels.items() for b in k.writes()}
    for no, k in kernels.items():
        for b in k.reads():
            w = writer.get(base(b))
            if w is not None and w != no:
                dag.add_edge(w, no)
    return dag
