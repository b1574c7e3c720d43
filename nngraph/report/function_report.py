"""fn.report(path): one self-contained HTML file of what the compiler made of a
function: the graph as built and after the passes (nodes coloured by the fused
kernel that computes them), a collapsed view with one box per kernel, each pass
with its rewrite counts and IR diff, the nodes fusion kept apart and why, the
kernels with their loads, stores and generated code, the memory plan, and the
profile when fn.profile() has run."""
from __future__ import annotations

import os
from html import escape

from .graph_svg import graph_svg, kernel_dag_svg
from .page import graph_views, page
from .sections import fusion_section, kernels_section, memory_section, passes_section, profile_section

# above this many nodes the page opens on the collapsed kernel view (the node
# views are still there, one click away)
LARGE_GRAPH = 1500


def _facts(fn, program) -> str:
    st = fn.stats()
    log = st.get("passes") or []
    nodes = f"{log[0]['nodes_before']} → {log[-1]['nodes_after']} nodes" if log else ""
    bits = [f"target {fn.target}", nodes, f"{st.get('kernels', 0)} kernels per call",
            f"{st.get('library_calls', 0)} library calls", f"compiled in {st.get('compile_seconds', 0.0):.3f} s",
            f"cache hit: {st.get('cache_hit')}"]
    return escape(" · ".join(b for b in bits if b))


def graph_section(fn, program) -> tuple[str, dict]:
    """The drawn graphs and their hover tables."""
    data, views = {}, []
    fused = program is not None and program.nodes is not None
    kernels_of = program.nodes.kernels_of if fused else None
    names = list(program.nodes.kernel_names) if fused else None   # body kernels after the schedule
    svg, data["g-opt"] = graph_svg(fn._run_graph, "g-opt", kernels_of, names)
    views.append(("g-opt", "after the passes, coloured by kernel" if fused else "after the passes", svg))
    # nodes the passes kept as they were are the same objects: they keep their kernel's colour
    svg, data["g-built"] = graph_svg(fn.graph, "g-built", kernels_of, names)
    views.append(("g-built", "as built", svg))
    if program is not None and program.schedule:
        views.append(("g-kernels", "one box per kernel (click one to open it)", kernel_dag_svg(program, "g-kernels")))
    big = len(data["g-opt"]) > LARGE_GRAPH and program is not None and program.schedule
    html = graph_views(views, "g-kernels" if big else "g-opt")
    html += ("<p class=muted>Hover a node for its op, type, the line that built it and its kernel; click one to "
             "highlight its kernel; wheel to zoom, drag to pan. Dashed: recomputed in several kernels; grey: "
             "inputs, parameters and constants; white (as built): nodes the passes replaced. A loop (scan) is a box "
             "holding its body, the graph of one step, each body node coloured by the per-step kernel that computes it "
             "(named loop/kernel).</p>")
    return html, data


def function_report(fn, title: str | None = None) -> tuple[str, dict]:
    """(sections, hover data) of a compiled function's report."""
    program = getattr(fn.runner, "program", None)
    graph_html, data = graph_section(fn, program)
    sections = [("graph", "Graph", graph_html), ("passes", "Passes", passes_section(fn))]
    if program is not None:
        sections += [("fusion", "Nodes kept apart from their consumers", fusion_section(fn.fusion())),
                     ("kernels", "Kernels, in launch order", kernels_section(fn, program)),
                     ("memory", "Memory plan", memory_section(fn, program)),
                     ("profile", "Profile", profile_section(fn.last_profile))]
    stages = "".join(f"<details><summary>{escape(s)}</summary><pre>{escape(fn.dump(s))}</pre></details>"
                     for s in fn.stages() if s in ("graph", "opt", "kernels"))
    sections.append(("stages", "Stages as text (fn.dump)", stages))
    return sections, data


def report_html(fn, title: str | None = None) -> str:
    title = title or f"nngraph: {fn.graph.name}"
    sections, data = function_report(fn, title)
    return page(title, _facts(fn, getattr(fn.runner, "program", None)), sections, data)


def write_html(path, html: str) -> str:
    """Write atomically (a half-written report never replaces a good one); returns the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(html)
    os.replace(tmp, path)
    return path


def write_report(fn, path, title: str | None = None) -> str:
    """fn.report(path): write the report of compiled function `fn`; returns the path."""
    return write_html(path, report_html(fn, title))
