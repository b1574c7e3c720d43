"""Graph -> Program: buffers, kernels (fused per passes/fusion.py), schedule, memory plan.

Kernels are formed from the materialised values in topological order. A value
starts a kernel, or joins an earlier LoopKernel as a further stage when that is
legal and useful:

- a reduction joins a kernel whose outer domain equals its kept sizes (a row
  block): reduce max, reduce sum, ... over one row, one stage each; independent
  reductions over the same inner domain share one stage;
- an elementwise value joins a kernel whose reductions it reads at the kernel's
  outer point (softmax's output reads the row max and row sum), or whose outer
  domain is its whole shape (a value and its gradient in one loop);
- never when it would read a buffer that kernel writes, or when the kernels'
  dependencies would form a cycle.

Reduction results that other kernels read are stored by a final map stage with
an empty inner domain (which also holds epilogues on the reduced shape, e.g. an
SGD step on a bias: b - lr * sum(g, 0)). Matmuls become MatmulKernels whose
epilogue stores their frontier values. `Program.stats["fusion"]` says why each
value was materialised and which values each kernel computes.
"""
from __future__ import annotations

import networkx as nx

from nngraph.node import OPS
from nngraph.types import TensorType

from . import fusion, lower_collective, lower_windows
from .lower_ops import Body, Emitter, LoweringError, NotFusable, is_source, scalar_const
from .kernel_dag import kernel_dag
from .memory import plan_memory
from .sibling_fusion import fuse_siblings
from .collective import collective_stats
from .program import Buffer, Instr, LoopKernel, MatmulKernel, Program, Stage, Store

MAX_CANDIDATES = 6


class _Stage:
    def __init__(self, inner, kind, group, no):
        self.inner, self.kind = tuple(inner), kind
        self.body = Body()
        self.reduce: list = []
        self.stores: list = []
        self.emitter = Emitter(self.body, group.low.buf_of, group.low.buffers, group.results,
                               [self.body.idx(q) for q in range(len(group.outer))], no,
                               group.inline, group.writes)


class _Group:
    def __init__(self, low, no, outer, matmul=None):
        self.low, self.no, self.outer = low, no, tuple(outer)
        self.stages: list = []
        self.members: list = []
        self.results: dict = {}       # id(reduction) -> (stage, slot, kept output positions)
        self.inline: set = set()
        self.writes: set = set()
        self.reads: set = set()
        self.kernel = matmul          # a MatmulKernel, or None for a LoopKernel

    def new_stage(self, inner, kind) -> _Stage:
        s = _Stage(inner, kind, self, len(self.stages))
        self.stages.append(s)
        return s


class _Lowering:
    def __init__(self, graph, opt_level):
        self.graph, self.opt = graph, opt_level
        self.plan = fusion.decide(graph, opt_level)
        self.buffers: dict = {}
        self.buf_of: dict = {}
        self.store_bufs: dict = {}
        self.groups: list = []
        self.writer: dict = {}
        self.dag = nx.DiGraph()
        self.group_of: dict = {}      # id(node) -> group that computes it
        self.names: set = set()

    # ------------------------------------------------------------------ buffers
    def add_buffer(self, name, type_: TensorType, kind, node=None, **kw) -> int:
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        b = Buffer(len(self.buffers), name, type_.dtype, tuple(type_.shape), kind,
                   source=node.where if node is not None else None, **kw)
        self.buffers[b.id] = b
        return b.id

    def make_buffers(self):
        g, plan = self.graph, self.plan
        self.inputs = [self.add_buffer(ph.name or f"in{i}", ph.type, "input", ph) for i, ph in enumerate(g.inputs)]
        for ph, b in zip(g.inputs, self.inputs):
            self.buf_of[id(ph)] = b
        self.params = []
        for p in g.params():
            b = self.add_buffer(p.name or "param", p.type, "param", p)
            self.buf_of[id(p)] = b
            self.params.append(b)
        for n in plan.order:
            if n.op == "constant" and n.ndim >= 1 and id(n) not in self.buf_of:
                self.buf_of[id(n)] = self.add_buffer("const", n.type, "const", n, value=n.attrs["value"].array)
        self.outputs = []
        for i, o in enumerate(g.outputs):
            b = self.add_buffer(o.name or f"out{i}", o.type, "output", o)
            self.outputs.append(b)
            self.store_bufs.setdefault(id(o), []).append(b)
        self.updates = []
        for p, v in g.updates:
            b = self.add_buffer(f"{p.name or 'param'}_new", p.type, "update", v, param=self.buf_of[id(p)])
            self.updates.append((self.buf_of[id(p)], b))
            self.store_bufs.setdefault(id(v), []).append(b)
        for n in plan.order:
            if id(n) in plan.reasons and not is_source(n):
                if id(n) not in self.store_bufs:
                    self.store_bufs[id(n)] = [self.add_buffer(n.name or f"t_{n.op}", n.type, "temp", n)]
                self.buf_of[id(n)] = self.store_bufs[id(n)][0]

    # ------------------------------------------------------------------ groups
    def view(self, base: int, shape, name=None) -> int:
        """A buffer that relabels `base`'s memory with another row-major shape."""
        b = self.buffers[base]
        return self.add_buffer(name or f"{b.name}_view", TensorType(b.dtype, tuple(shape)), "view",
                               view_of=base)

    def operand_buffer(self, n, dtype: str) -> int:
        """A buffer holding n's value as `dtype`: its own, or a temp filled by a copy kernel."""
        b = self.buf_of.get(id(n))
        if b is not None and self.buffers[b].dtype == dtype:
            return b
        t = self.add_buffer(f"t_{n.op}_{dtype}", TensorType(dtype, tuple(n.shape)), "temp", n)
        g = self.new_group(tuple(n.shape))
        st = g.new_stage((), "map")
        idx = tuple(st.body.idx(k) for k in range(n.ndim))
        v = st.body.cast(st.emitter.value(n, idx), dtype)
        st.stores.append(Store(t, self._store_index(st.body, t, idx), v))
        g.members.append(n)
        self.note_reads(g, st.emitter.loads)
        self.note_writes(g, {t})
        return t

    def new_group(self, outer, matmul=None) -> _Group:
        g = _Group(self, len(self.groups), outer, matmul)
        self.groups.append(g)
        self.dag.add_node(g.no)
        return g

    def base(self, b: int) -> int:
        while self.buffers[b].view_of is not None:
            b = self.buffers[b].view_of
        return b

    def dag_ok(self, g: _Group, loads) -> bool:
        for b in loads:
            w = self.writer.get(self.base(b))
            if w is None or w == g.no:
                if w == g.no:
                    return False
                continue
            if nx.has_path(self.dag, g.no, w):
                return False
        return True

    def note_reads(self, g: _Group, loads):
        for b in loads:
            b = self.base(b)
            g.reads.add(b)
            w = self.writer.get(b)
            if w is not None and w != g.no:
                self.dag.add_edge(w, g.no)

    def note_writes(self, g: _Group, bufs):
        for b in bufs:
            for x in {b, self.base(b)}:
                g.writes.add(x)
                self.writer[x] = g.no

    def lower(self) -> Program:
        self.make_buffers()
        plan = self.plan
        for n in lower_collective.phase_order(plan.order):
            if n.op in lower_collective.LOWER:
                lower_collective.LOWER[n.op](self, n)
                continue
            if n.op == "matmul" and id(n) in plan.reasons:
                self.lower_matmul(n)
                continue
            if n.op in lower_windows.LOWER and id(n) in plan.reasons:
                lower_windows.LOWER[n.op](self, n)
                continue
            if id(n) in plan.owner:
                continue  # stored by its matmul's epilogue
            if id(n) in plan.reasons or (id(n) in self.store_bufs and (is_source(n) or scalar_const(n))):
                if OPS[n.op].kind == "reduction":
                    self.lower_reduction(n)
                else:
                    self.lower_map(n)
        self.finish_results()
        return self.assemble()

    # ------------------------------------------------------------------ reductions
    def lower_reduction(self, r):
        x, axes = r.inputs[0], r.attrs["axes"]
        kept = [a for a in range(x.ndim) if a not in axes]
        outer = tuple(x.shape[a] for a in kept)
        cands = [g for g in reversed(self.groups) if g.kernel is None and g.outer == outer][:MAX_CANDIDATES]
        if self.opt >= 1:
            for g in cands:
                if self.try_reduction(g, r, dry=True):
                    self.try_reduction(g, r, dry=False)
                    return
        g = self.new_group(outer)
        if not self.try_reduction(g, r, dry=False):
            raise LoweringError(f"cannot lower {r.op} {r.type} built at {r.where}")

    def _reduction_index(self, body, r, p):
        x, axes = r.inputs[0], r.attrs["axes"]
        idx, q, t = [], 0, 0
        for a in range(x.ndim):
            if a in axes:
                idx.append(body.idx(p + t))
                t += 1
            else:
                idx.append(body.idx(q))
                q += 1
        return tuple(idx)

    def try_reduction(self, g: _Group, r, dry: bool) -> bool:
        x, axes = r.inputs[0], r.attrs["axes"]
        p = len(g.outer)
        inner = tuple(x.shape[a] for a in axes)
        if dry:
            body = Body()
            em = Emitter(body, self.buf_of, self.buffers, g.results, [body.idx(q) for q in range(p)],
                         len(g.stages), g.inline, g.writes)
            try:
                em.value(x, self._reduction_index(body, r, p))
            except NotFusable:
                return False
            return self.dag_ok(g, em.loads)
        # the latest reduce stage, looking past per-row epilogue stages (they make no results)
        k = len(g.stages) - 1
        while k >= 0 and g.stages[k].kind == "map" and g.stages[k].inner == ():
            k -= 1
        last = g.stages[k] if k >= 0 else None
        stage = None
        if last is not None and last.kind == "reduce" and last.inner == inner:
            m = last.emitter.mark()
            try:
                v = last.emitter.value(x, self._reduction_index(last.body, r, p))
                stage = last
            except NotFusable:
                last.emitter.rollback(m)
        if stage is None:
            stage = g.new_stage(inner, "reduce")
            v = stage.emitter.value(x, self._reduction_index(stage.body, r, p))
        entry = ("argmax", v, stage.body.idx(p)) if r.op == "argmax" else (r.op, v)
        stage.reduce.append(entry)
        kept_out = ([a for a in range(x.ndim) if a not in axes] if r.attrs["keepdims"]
                    else list(range(len(g.outer))))
        g.results[id(r)] = (g.stages.index(stage), len(stage.reduce) - 1, kept_out)
        g.members.append(r)
        self.group_of[id(r)] = g
        self.note_reads(g, stage.emitter.loads)
        self.note_writes(g, self.store_bufs.get(id(r), []))
        return True

    # ------------------------------------------------------------------ elementwise / movement values
    def lower_map(self, n):
        S = tuple(n.shape)
        if self.opt >= 1:
            for g, assign in self.map_candidates(n):
                if self.add_map(g, n, assign, dry=True):
                    self.add_map(g, n, assign, dry=False)
                    return
        g = self.new_group(S)
        self.add_map(g, n, list(range(len(S))), dry=False)

    def map_candidates(self, n):
        """(group, outer axis -> axis of n) pairs worth trying, most promising first."""
        S = tuple(n.shape)
        out = []
        # a probe without kernel context tells which reductions n reads
        body = Body()
        em = Emitter(body, self.buf_of, self.buffers, inline={id(n)} if not is_source(n) else set())
        try:
            em.value(n, tuple(body.idx(k) for k in range(len(S))))
        except (NotFusable, LoweringError):
            return []
        readers = []
        for b in em.loads:
            w = self.writer.get(b)
            if w is not None and self.groups[w].kernel is None and self.groups[w] not in readers:
                readers.append(self.groups[w])
        readers.sort(key=lambda g: -g.no)
        for g in readers[:MAX_CANDIDATES]:
            a = self.assignment(g, n)
            if a is not None:
                out.append((g, a))
        same = [g for g in reversed(self.groups) if g.kernel is None and g.outer == S and g not in readers]
        out += [(g, list(range(len(S)))) for g in same[:MAX_CANDIDATES]]
        return out

    def assignment(self, g: _Group, n):
        """Which axis of n each outer axis of g is, read off the indices at which n reads
        g's reductions; None when they do not line up."""
        S = tuple(n.shape)
        body = Body()
        em = Emitter(body, self.buf_of, self.buffers, g.results, (), 10 ** 9,
                     g.inline | ({id(n)} if not is_source(n) else set()), g.writes, probe=True)
        try:
            em.value(n, tuple(body.idx(k) for k in range(len(S))))
        except (NotFusable, LoweringError):
            return None
        if not em.refs:
            return None
        assign = [None] * len(g.outer)
        for r, ridx in em.refs:
            for q, ko in enumerate(g.results[id(r)][2]):
                if r.shape[ko] == 1:
                    continue
                ins = body.instrs[ridx[ko]]
                if ins.op != "idx":
                    return None
                axis = ins.attr("axis")
                if assign[q] is None:
                    assign[q] = axis
                elif assign[q] != axis:
                    return None
        used = [a for a in assign if a is not None]
        if len(set(used)) != len(used):
            return None
        for q, a in enumerate(assign):
            if a is None and g.outer[q] != 1:
                return None
            if a is not None and S[a] != g.outer[q]:
                return None
        return assign

    def _map_index(self, body, n, assign, p):
        S = tuple(n.shape)
        var = {}
        for q, a in enumerate(assign):
            if a is not None:
                var[a] = body.idx(q)
        t = 0
        inner = []
        for k in range(len(S)):
            if k not in var:
                var[k] = body.idx(p + t)
                inner.append(S[k])
                t += 1
        return tuple(var[k] for k in range(len(S))), tuple(inner)

    def add_map(self, g: _Group, n, assign, dry: bool) -> bool:
        p = len(g.outer)
        own = set() if is_source(n) or scalar_const(n) else {id(n)}
        if dry:
            body = Body()
            em = Emitter(body, self.buf_of, self.buffers, g.results, [body.idx(q) for q in range(p)],
                         len(g.stages), g.inline | own, g.writes)
            idx, _ = self._map_index(body, n, assign, p)
            try:
                em.value(n, idx)
            except NotFusable:
                return False
            return self.dag_ok(g, em.loads)
        _, inner = self._map_index(Body(), n, assign, p)
        last = g.stages[-1] if g.stages else None
        stage = last if last is not None and last.kind == "map" and last.inner == inner else g.new_stage(inner, "map")
        g.inline |= own
        idx, _ = self._map_index(stage.body, n, assign, p)
        v = stage.emitter.value(n, idx)
        bufs = self.store_bufs[id(n)]
        for b in bufs:
            stage.stores.append(Store(b, self._store_index(stage.body, b, idx), v))
        g.members.append(n)
        self.group_of[id(n)] = g
        self.note_reads(g, stage.emitter.loads)
        self.note_writes(g, bufs)
        return True

    def _store_index(self, body, b, idx):
        return tuple(body.iconst(0) if s == 1 else i for s, i in zip(self.buffers[b].shape, idx))

    # ------------------------------------------------------------------ matmul
    def lower_matmul(self, m):
        (an, ta), (bn, tb) = self.plan.operands[id(m)]
        a, b = self.buf_of[id(an)], self.buf_of[id(bn)]
        frontier = self.plan.epilogue.get(id(m), [m])
        stores = [(f, bb) for f in frontier for bb in self.store_bufs[id(f)]]
        out = next((bb for f, bb in stores if self.buffers[bb].dtype == m.dtype
                    and tuple(self.buffers[bb].shape) == tuple(m.shape)), None)
        if out is None:
            out = self.add_buffer(f"t_{m.op}", m.type, "temp", m)
        kern = MatmulKernel("k_matmul", a, b, out, tuple(m.shape[:-2]), m.shape[-2],
                            m.shape[-1], m.inputs[0].shape[-1], ta, tb, source=fusion.label(m))
        g = self.new_group(tuple(m.shape), kern)
        writes = {bb for _, bb in stores} | {out}
        self.note_writes(g, writes)
        loads = {a, b}
        if frontier != [m] or len(stores) > 1:
            body = Body()
            idx = tuple(body.idx(k) for k in range(m.ndim))
            em = Emitter(body, self.buf_of, self.buffers, outer=idx, inline={id(f) for f in frontier},
                         forbid=g.writes, acc=(m, idx))
            st = Stage((), body.instrs, (), [])
            for f in frontier:
                v = em.value(f, idx)
                for bb in self.store_bufs[id(f)]:
                    st.stores.append(Store(bb, self._store_index(body, bb, idx), v))
            kern.epilogue = compact(st)
            loads |= em.loads
        g.members = list(frontier)
        for f in frontier:
            self.group_of[id(f)] = g
        self.note_reads(g, loads)

    # ------------------------------------------------------------------ finishing
    def finish_results(self):
        """Store each reduction result that another kernel reads, or that is returned."""
        read_elsewhere = set()
        for g in self.groups:
            read_elsewhere |= g.reads - g.writes
        for g in self.groups:
            need = [r for r in g.members if id(r) in g.results
                    and any(b in read_elsewhere or self.buffers[b].kind in ("output", "update")
                            for b in self.store_bufs.get(id(r), []))]
            if not need:
                continue
            last = g.stages[-1]
            stage = last if last.kind == "map" and last.inner == () else g.new_stage((), "map")
            body = stage.body
            for r in need:
                s, slot, kept_out = g.results[id(r)]
                v = body.emit("result", (), r.dtype, stage=s, slot=slot)
                idx = [body.iconst(0)] * r.ndim
                for q, k in enumerate(kept_out):
                    idx[k] = body.idx(q)
                for b in self.store_bufs[id(r)]:
                    stage.stores.append(Store(b, self._store_index(body, b, idx), v))
            for r in g.members:
                if id(r) in g.results and r not in need:
                    g.writes -= set(self.store_bufs.get(id(r), []))

    def assemble(self) -> Program:
        kernels = {}
        for g in self.groups:
            if g.kernel is not None:
                kernels[g.no] = g.kernel
                continue
            names = "+".join(sorted({m.op for m in g.members}))
            stages = [compact(Stage(s.inner, s.body.instrs, tuple(s.reduce), s.stores)) for s in g.stages]
            kernels[g.no] = LoopKernel(f"k{g.no}_{names}"[:60], g.outer, stages,
                                       ", ".join(fusion.label(m) for m in g.members))
        if self.opt >= 1:
            kernels = fuse_siblings(kernels, self.base)
        order = list(nx.lexicographical_topological_sort(kernel_dag(kernels, self.base)))
        schedule = [kernels[no] for no in order]
        for n, k in enumerate(schedule):
            k.name = f"k{n}_" + k.name.split("_", 1)[1]
        # drop buffers nobody touches (unused constants, unstored reduction temps)
        used = set(self.inputs) | set(self.params) | set(self.outputs) | {b for pair in self.updates for b in pair}
        for k in schedule:
            used |= k.reads() | k.writes()
        for b in list(used):
            while self.buffers[b].view_of is not None:
                b = self.buffers[b].view_of
                used.add(b)
        buffers = {b: buf for b, buf in self.buffers.items() if b in used}
        prog = Program(buffers, schedule, list(self.inputs), list(self.params), list(self.outputs),
                       list(self.updates))
        prog.plan = plan_memory(prog)
        reasons = {fusion.label(n): why for n in self.plan.order if (why := self.plan.reasons.get(id(n)))}
        prog.stats = {
            "kernels": len(schedule),
            "library_calls": sum(isinstance(k, MatmulKernel) for k in schedule),
            "loop_kernels": sum(isinstance(k, LoopKernel) for k in schedule),
            "fusion": {
                "opt_level": self.opt,
                "materialised": reasons,
                "kernels": [{"name": k.name, "computes": k.source,
                             "stages": len(k.stages) if isinstance(k, LoopKernel) else 0,
                             "epilogue": bool(getattr(k, "epilogue", None))} for k in schedule],
            },
        }
        if any(n.op == "all_reduce" for n in self.plan.order):
            prog.stats["all_reduce"] = collective_stats(schedule, buffers)
        return prog


def compact(st: Stage) -> Stage:
    """Drop body instructions nothing stored or reduced depends on, renumbering the rest."""
    need = set()
    stack = [st.value for st in st.stores] + [i for s in st.stores for i in s.index]
    stack += [a for r in st.reduce for a in r[1:]]
    while stack:
        k = stack.pop()
        if k not in need:
            need.add(k)
            stack.extend(st.body[k].args)
    keep = sorted(need)
    new = {old: n for n, old in enumerate(keep)}
    body = [Instr(i.op, tuple(new[a] for a in i.args), i.attrs, i.dtype) for i in (st.body[k] for k in keep)]
    return Stage(st.inner, body, tuple((r[0],) + tuple(new[a] for a in r[1:]) for r in st.reduce),
                 [Store(x.buffer, tuple(new[a] for a in x.index), new[x.value]) for x in st.stores])


def to_program(graph, opt_level: int = 2) -> Program:
    """Lower an (optimised) Graph to a Program: fusion (opt_level >= 1; 0 = one kernel
    per op), schedule and memory plan."""
    if opt_level not in (0, 1, 2):
        raise ValueError(f"opt_level must be 0, 1 or 2, got {opt_level!r}")
    return _Lowering(graph, opt_level).lower()

