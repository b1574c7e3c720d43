"""The report's sections as HTML fragments, one function each: what the passes
changed, the kernels with their code, the memory plan, the profile, and the
nodes fusion kept apart. Every piece of text is escaped; nothing is fetched."""
from __future__ import annotations

import os
import tempfile
from html import escape

from passes.pipeline import optimize, passes_for
from passes.program import LoopKernel, MatmulKernel, format_program, size_text

from .code_split import SPLITTERS
from .graph_svg import kernel_colour
from .ir_diff import ir_diff

MAX_DIFF_LINES = 400
MAX_CODE_LINES = 400


def _pre(text: str, limit: int | None = None) -> str:
    lines = text.splitlines()
    if limit is not None and len(lines) > limit:
        lines = lines[:limit] + [f"... {len(lines) - limit} more lines (fn.dump() has them all)"]
    return f"<pre>{escape(chr(10).join(lines))}</pre>"


def table(rows: list, columns: list) -> str:
    """An HTML table of dict rows; columns are (key, heading) pairs."""
    head = "".join(f"<th>{escape(h)}</th>" for _, h in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(r.get(k, '')))}</td>" for k, _ in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------- passes


def pass_texts(graph, opt_level: int) -> list:
    """[(pass name, the graph's text after it)], "input" first: the pipeline run again
    on the graph as built, written out as dump_dir writes it."""
    with tempfile.TemporaryDirectory() as d:
        optimize(graph, opt_level=opt_level, dump_dir=d)
        files = sorted(os.listdir(d))
        out = []
        for f in files:
            with open(os.path.join(d, f)) as fh:
                out.append((f[:-4].split("-", 1)[1], fh.read()))
    return out


def passes_section(fn) -> str:
    log = fn.stats().get("passes", [])
    level = fn.stats().get("opt_level", 2)
    texts = pass_texts(fn.graph, level) if len(log) == len(passes_for(level)) else []
    parts = []
    for k, e in enumerate(log, start=1):
        rw = ", ".join(f"{r} ×{c}" for r, c in e["rewrites"].items()) or "no rewrite fired"
        diff = ""
        if texts:
            d = ir_diff(texts[k - 1][1], texts[k][1])
            diff = _diff_html(d) if d else "<p class=muted>the IR did not change</p>"
        parts.append(f'<details class="pass"><summary><b>{k:02d} {escape(e["pass"])}</b> '
                     f'{e["nodes_before"]} → {e["nodes_after"]} nodes, {1e3 * e["seconds"]:.2f} ms: '
                     f"{escape(rw)}</summary>{diff}</details>")
    return "".join(parts) or "<p class=muted>no pass ran</p>"


def _diff_html(lines: list) -> str:
    more = len(lines) - MAX_DIFF_LINES
    out = []
    for ln in lines[:MAX_DIFF_LINES]:
        cls = "add" if ln.startswith("+") else "del" if ln.startswith("-") else "hunk" if ln.startswith("@") else ""
        out.append(f'<span class="{cls}">{escape(ln)}</span>' if cls else escape(ln))
    if more > 0:
        out.append(f"... {more} more lines")
    return "<pre class=diff>" + "\n".join(out) + "</pre>"


# ----------------------------------------------------------------------------- kernels


def kernel_texts(program) -> dict:
    """Schedule position -> that kernel's part of fn.dump("kernels")."""
    out, cur, no = {}, [], None
    for line in format_program(program).splitlines():
        if line.startswith("kernel "):
            no, cur = int(line.split()[1]), []
            out[no] = cur
        elif not line.strip():
            no = None
        if no is not None:
            cur.append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def _kernel_summary(program, k, kern, names_of) -> str:
    bname = lambda b: "@" + program.buffers[b].name  # noqa: E731
    if isinstance(kern, MatmulKernel):
        what = (f"matmul [{','.join(map(size_text, tuple(kern.batch) + (kern.m, kern.n)))}] k={size_text(kern.k)}"
                + (" + epilogue" if kern.epilogue else ""))
    elif hasattr(kern, "describe"):     # passes/collective.py's AllReduceKernel: no loop nest
        what = kern.describe(lambda b: program.buffers[b].name)[0]
    else:
        what = f"loop over [{','.join(map(str, kern.outer))}], {len(kern.stages)} stage(s)"
    reads = ", ".join(sorted(map(bname, kern.reads())))
    writes = ", ".join(sorted(map(bname, kern.writes())))
    return (f'<span class="sw" style="background:{kernel_colour(k)}"></span><b>{escape(kern.name)}</b> '
            f"{escape(what)} — reads {escape(reads)} — writes {escape(writes)}"
            f"<div class=computes>computes: {escape(names_of(k))}</div>")


def kernels_section(fn, program) -> str:
    texts = kernel_texts(program)
    code = {}
    for stage in ("llvm", "asm", "triton"):
        if stage in fn.stages():
            code[stage] = SPLITTERS[stage](fn.dump(stage))
    from ..textir import nested_value_names
    names = nested_value_names(fn._run_graph)

    def names_of(k):
        nodes = program.nodes.computes_within(k) if program.nodes is not None else []
        return ", ".join(f"%{names[id(n)]} {n.op} @{n.where}" for n in nodes if id(n) in names) or "-"
    parts = []
    for k, kern in enumerate(program.schedule):
        inner = _pre(texts.get(k, ""))
        for stage, pieces in code.items():
            if k in pieces:
                inner += f"<details><summary>{stage}</summary>{_pre(pieces[k], MAX_CODE_LINES)}</details>"
        parts.append(f'<details class="kernel" id="kernel-{k}"><summary>{_kernel_summary(program, k, kern, names_of)}'
                     f"</summary>{inner}</details>")
    for stage, pieces in code.items():
        if None in pieces:
            parts.append(f"<details><summary>{stage}: entry point and the rest of the module</summary>"
                         f"{_pre(pieces[None], MAX_CODE_LINES)}</details>")
    kinds = sum(isinstance(k, LoopKernel) for k in program.schedule)
    head = (f"<p>{len(program.schedule)} kernels in launch order ({kinds} loop kernels, "
            f"{len(program.schedule) - kinds} contractions).</p>")
    return head + "".join(parts)


# ----------------------------------------------------------------------------- memory


def memory_section(fn, program) -> str:
    rows = []
    for b in program.buffers.values():
        rows.append({"name": "@" + b.name, "type": b.type_str(), "kind": b.kind,
                     "slot": program.plan.get(b.id, ""), "built at": b.source or "",
                     "of": "@" + program.buffers[b.view_of].name if b.view_of is not None else ""})
    slots = len(set(program.plan.values()))
    temps = sum(b.kind == "temp" for b in program.buffers.values())
    peak = fn.stats().get("peak_bytes", 0)
    head = (f"<p>{temps} intermediate buffers share {slots} arena slots; peak intermediate memory "
            f"{peak:,} bytes for the last call's sizes{'' if peak else ' (no call yet)'}.</p>")
    cols = [("name", "buffer"), ("type", "type"), ("kind", "kind"), ("slot", "slot"), ("of", "view of"),
            ("built at", "built at")]
    return head + table(rows, cols)


# ----------------------------------------------------------------------------- profile and fusion


def profile_section(profile) -> str:
    if profile is None:
        return "<p class=muted>fn.profile() has not run: call it before fn.report() to see time per kernel.</p>"
    info, floor = profile.info, profile.info.get("machine") or {}
    rows = sorted(enumerate(profile.rows), key=lambda t: -t[1]["seconds"])
    top = max((r["share"] for _, r in rows), default=1.0) or 1.0
    bars = []
    for _, r in rows:
        rate = (f"{r['GFLOP/s']:.2f} GFLOP/s" if r["kind"] != "loop" else f"{r['GB/s']:.2f} GB/s")
        ref = floor.get("GFLOP/s" if r["kind"] != "loop" else "GB/s")
        what = "GEMM" if r["kind"] != "loop" else "copy"
        of = f" ({(r['GFLOP/s'] if r['kind'] != 'loop' else r['GB/s']) / ref:.2f}× the host's {what} rate)" if ref else ""
        bars.append(f'<div class="bar"><span class="bl">{escape(r["kernel"])}</span>'
                    f'<span class="bt"><span class="bf" style="width:{100 * r["share"] / top:.1f}%"></span></span>'
                    f'<span class="bv">{100 * r["share"]:.1f}% · {1e6 * r["seconds"]:.1f} us · {escape(rate + of)}'
                    f"</span></div>")
    fl = (f"The host's rates, measured now (lower when the machine is busy; data in cache can move faster "
          f"than a copy through memory): copy {floor['GB/s']:.1f} GB/s, float32 GEMM "
          f"{floor['GFLOP/s']:.1f} GFLOP/s. " if floor else "")
    head = (f"<p>{info['calls']} calls on {escape(info['target'])}, sizes {escape(str(info['sizes']))}: "
            f"kernels {1e6 * info['kernel_seconds']:.1f} us per call, whole call "
            f"{1e6 * info['wall_seconds']:.1f} us. {escape(fl)}</p>")
    return head + "".join(bars) + f"<details><summary>as text</summary>{_pre(str(profile))}</details>"


def fusion_section(rows) -> str:
    if not rows:
        return "<p class=muted>every node is fused into its consumers (or there is no Program).</p>"
    cols = [("node", "node"), ("op", "op"), ("type", "type"), ("where", "built at"), ("kernel", "kernel"),
            ("reason", "why it is stored"), ("read_by", "read by")]
    return table([dict(r, read_by=", ".join(r["read_by"])) for r in rows], cols)
