"""The public lowering context: what every kernel rule (passes/lower/registry.py)
works through, and the driver that walks the graph.

`LoweringContext.lower()` visits the materialised values in topological order and
calls each one's kernel rule: the op's own (`@lowering("conv2d")`), else its kind's
default (every reduction lowers by passes/lower/reduce.py, a materialised elementwise
or movement value by passes/lower/elementwise.py). A rule builds kernels with
`new_group` (a `KernelBuilder`: an outer domain, stages, members, results), reads
and writes buffers through `note_reads` / `note_writes` (they keep the kernel
dependency graph acyclic: `can_join`), registers reduction results that later
stages or kernels read (`register_result`), stores at `store_index`, and emits a
contraction's epilogue with `emit_epilogue`. `cached(key, make)` shares one value
between rules (the im2col columns of a conv and of its filter gradient).
`conv_choice(geometry, dtype, products)` names a convolution layer's layout
(passes/lower/conv_layout.py); the backend that lowers may measure it.
Finishing (reduction results other kernels read) and assembling the Program are in
passes/lower/assemble.py.
"""
from __future__ import annotations

from nngraph.types import TensorType

from .. import fusion
from ..dag import Dag
from ..program import Buffer, Stage, Store, dependency_root, param_buffer_name
from .assemble import assemble, finish_results
from .collective import pack_all_reduces, phase_order
from .body import Body, LoweringError
from .emitter import Emitter
from .registry import lowering


class StageBuilder:
    """One stage of a LoopKernel being built: inner domain, body, reductions, stores."""

    def __init__(self, inner, kind, group, no):
        self.inner, self.kind = tuple(inner), kind
        self.body = Body()
        self.reduce: list = []
        self.stores: list = []
        self.emitter = Emitter(self.body, group.ctx.buf_of, group.ctx.buffers, group.results,
                               [self.body.idx(q) for q in range(len(group.outer))], no,
                               group.inline, group.writes)


class KernelBuilder:
    """A kernel being built: a LoopKernel's stages, or a MatmulKernel (`kernel`)."""

    def __init__(self, ctx, no, outer, matmul=None):
        self.ctx, self.no, self.outer = ctx, no, tuple(outer)
        self.stages: list = []
        self.members: list = []
        self.results: dict = {}       # id(reduction) -> (stage, slot, kept output positions)
        self.inline: set = set()
        self.writes: set = set()
        self.reads: set = set()
        self.kernel = matmul          # a MatmulKernel, or None for a LoopKernel

    def new_stage(self, inner, kind) -> StageBuilder:
        s = StageBuilder(inner, kind, self, len(self.stages))
        self.stages.append(s)
        return s


class LoweringContext:
    def __init__(self, graph, opt_level, conv_choice=None):
        self.graph, self.opt = graph, opt_level
        # conv_choice(geometry dict, dtype, products) -> a layout name of passes/lower/conv_layout.py
        self.conv_choice = conv_choice or (lambda geo, dtype, products: "batch")
        self.plan = fusion.decide(graph, opt_level)
        self.buffers: dict = {}
        self.buf_of: dict = {}
        self.store_bufs: dict = {}
        self.groups: list = []
        self.writer: dict = {}
        self.dag = Dag()
        self.group_of: dict = {}      # id(node) -> group that computes it
        self.names: set = set()
        self._cache: dict = {}
        self.lowered: set = set()     # ids of nodes a rule lowered together with another one
        self.body_maps: dict = {}     # id(ScanLoop) -> passes/kernel_map.NodeMap of its body

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
        self.make_source_buffers()
        self.make_const_buffers()
        self.make_result_buffers()
        self.make_temp_buffers()

    def make_source_buffers(self):
        """Buffers of the graph's inputs and parameters."""
        g = self.graph
        self.inputs = [self.add_buffer(ph.name or f"in{i}", ph.type, "input", ph) for i, ph in enumerate(g.inputs)]
        for ph, b in zip(g.inputs, self.inputs):
            self.buf_of[id(ph)] = b
        self.params = []
        for p in g.params():
            b = self.add_buffer(param_buffer_name(p.name), p.type, "param", p)
            self.buf_of[id(p)] = b
            self.params.append(b)

    def make_const_buffers(self):
        for n in self.plan.order:
            if n.op == "constant" and n.ndim >= 1 and id(n) not in self.buf_of:
                self.buf_of[id(n)] = self.add_buffer("const", n.type, "const", n, value=n.attrs["value"].array)

    def make_result_buffers(self):
        """Buffers of the graph's outputs and parameter updates."""
        g = self.graph
        self.outputs = []
        for i, o in enumerate(g.outputs):
            b = self.add_buffer(o.name or f"out{i}", o.type, "output", o)
            self.outputs.append(b)
            self.store_bufs.setdefault(id(o), []).append(b)
        self.updates = []
        for p, v in g.updates:
            b = self.add_buffer(f"{param_buffer_name(p.name)}_new", p.type, "update", v, param=self.buf_of[id(p)])
            self.updates.append((self.buf_of[id(p)], b))
            self.store_bufs.setdefault(id(v), []).append(b)

    def make_temp_buffers(self):
        """A temp for every value fusion materialised that has no buffer yet."""
        plan = self.plan
        for n in plan.order:
            if id(n) in plan.reasons and not fusion.is_source(n):
                if id(n) not in self.store_bufs:
                    self.store_bufs[id(n)] = [self.add_buffer(n.name or f"t_{n.op}", n.type, "temp", n)]
                self.buf_of[id(n)] = self.store_bufs[id(n)][0]

    def view(self, base: int, shape, name=None, offset=None) -> int:
        """A buffer that relabels `base`'s memory with another row-major shape; with an
        `offset` (elements), a part of it: its elements start there (a packed slot)."""
        b = self.buffers[base]
        return self.add_buffer(name or f"{b.name}_view", TensorType(b.dtype, tuple(shape)), "view",
                               view_of=base, offset=offset)

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
        st.stores.append(self.store(st.body, t, idx, v))
        g.members.append(n)
        self.note_reads(g, st.emitter.loads)
        self.note_writes(g, {t})
        return t

    def returns(self, b: int) -> bool:
        """Is b a result of the graph being lowered (stored even if no kernel reads it)?"""
        return self.buffers[b].kind in ("output", "update")

    def root(self, b: int) -> int:
        """The buffer whose writer a reader of b depends on: the buffer whose memory b is,
        or the part of a packed buffer b is (passes/program.py's dependency_root)."""
        return dependency_root(self.buffers, b)

    def cached(self, key, make):
        """make(), computed once per key for the whole lowering (shared kernels)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # ------------------------------------------------------------------ kernels
    def new_group(self, outer, matmul=None) -> KernelBuilder:
        g = KernelBuilder(self, len(self.groups), outer, matmul)
        self.groups.append(g)
        self.dag.add_node(g.no)
        return g

    def can_join(self, g: KernelBuilder, loads) -> bool:
        """May g read `loads`: none is written by g itself, and no load's writer
        depends on g (which would make the kernel graph cyclic)?"""
        for b in loads:
            w = self.writer.get(self.root(b))
            if w is None or w == g.no:
                if w == g.no:
                    return False
                continue
            if self.dag.has_path(g.no, w):
                return False
        return True

    def note_reads(self, g: KernelBuilder, loads):
        for b in loads:
            b = self.root(b)
            g.reads.add(b)
            w = self.writer.get(b)
            if w is not None and w != g.no:
                self.dag.add_edge(w, g.no)

    def note_writes(self, g: KernelBuilder, bufs):
        for b in bufs:
            for x in {b, self.root(b)}:
                g.writes.add(x)
                self.writer[x] = g.no

    def register_result(self, g: KernelBuilder, n, stage_no: int, slot: int, kept=None):
        """n's value is slot `slot` of reduce stage `stage_no` of g, kept axes `kept` (all
        of n's axes by default): later stages read it, and n's buffers are g's to write."""
        g.results[id(n)] = (stage_no, slot, list(range(n.ndim)) if kept is None else list(kept))
        g.members.append(n)
        self.group_of[id(n)] = g
        self.note_writes(g, self.store_bufs.get(id(n), []))

    def store_index(self, body, b, idx):
        """idx as an index of buffer b: the const 0 on b's size-1 axes."""
        return tuple(body.iconst(0) if s == 1 else i for s, i in zip(self.buffers[b].shape, idx))

    def store(self, body, b, idx, v) -> Store:
        return Store(b, self.store_index(body, b, idx), v)

    def epilogue_output(self, n, frontier):
        """(every (frontier node, buffer) the epilogue stores, the buffer among them that
        can hold n's product itself (its dtype and shape), or None)."""
        stores = [(f, bb) for f in frontier for bb in self.store_bufs[id(f)]]
        out = next((bb for f, bb in stores if self.buffers[bb].dtype == n.dtype
                    and tuple(self.buffers[bb].shape) == tuple(n.shape)), None)
        return stores, out

    def emit_epilogue(self, g: KernelBuilder, n, frontier, node_index) -> set:
        """The contraction n's epilogue: a map Stage over g's outer domain that computes
        every frontier value from the product (`acc`) and stores it. node_index(body)
        gives n's index from the kernel's loop indices. Sets g.kernel.epilogue; returns
        the buffers it loads."""
        body = Body()
        idx = node_index(body)
        em = Emitter(body, self.buf_of, self.buffers, outer=idx, inline={id(f) for f in frontier},
                     forbid=g.writes, acc=(n, idx))
        st = Stage((), body.instrs, (), [])
        for f in frontier:
            v = em.value(f, idx)
            for bb in self.store_bufs[id(f)]:
                st.stores.append(self.store(body, bb, idx, v))
        g.kernel.epilogue = st.compact()
        return em.loads

    # ------------------------------------------------------------------ the walk
    def lower(self):
        self.walk()
        return assemble(self)

    def walk(self):
        """Buffers, every materialised node's kernel rule, then the reduction results
        other kernels read: the kernel groups, not yet ordered (assemble does that)."""
        self.make_buffers()
        pack_all_reduces(self)
        plan = self.plan
        for n in phase_order(plan.order):
            if id(n) in self.lowered:
                continue
            own = lowering.rule(n.op, kind_default=False)
            if own is not None and id(n) in plan.reasons:
                own(self, n)
                continue
            if id(n) in plan.owner:
                continue  # stored by its contraction's epilogue
            if id(n) in plan.reasons or (id(n) in self.store_bufs
                                         and (fusion.is_source(n) or fusion.scalar_const(n))):
                rule = lowering.rule(n.op)
                if rule is None:
                    raise LoweringError(f"no lowering registered for {n.op} ({n.type} built at {n.where})")
                rule(self, n)
        finish_results(self)
