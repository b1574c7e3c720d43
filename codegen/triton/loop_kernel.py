"""LoopKernel -> Triton kernels and their launcher.

Two shapes of kernel, as in the Triton tutorials:

- pointwise (every stage a map with no inner domain): one program per XBLOCK
  consecutive outer points, a 1-d block with a mask for the ragged end;
- row kernels (any reduce stage or inner domain): one program per XBLOCK outer
  points (rows) and, for each stage in order, a loop over the stage's inner domain
  in blocks of RBLOCK; reduce stages accumulate a [XBLOCK, RBLOCK] block and fold
  it at the end of their loop, so softmax, log_softmax and cross-entropy are one
  kernel with one pass per stage over each row, and rows of any length work.
  Stores of any stage, reduce stages included, happen at every inner point.

A row kernel whose rows are few and long (sum(x) over a whole tensor: one row) would
keep one program busy and the GPU idle, so where it is valid it also gets a split
pair: `<name>_part` runs on a 2-d grid (chunk, row block) and reduces one chunk of
each row's inner domains into partial results (a scratch tensor [parts, rows] per
reduction, made by the launcher), then `<name>_combine` folds the partials of each
row (sums add, max/min fold with NaN propagating, argmax takes the best value and
the first index among equals) and runs the stages with no inner domain (the
epilogue that stores the results). Valid where the stages with an inner domain come
first and read no `result` (softmax's later passes need the whole row's max first:
those kernels keep one program per row block). The launcher picks at each launch, from the
dynamic sizes, as module._split says: split when the row programs alone would be
fewer than SPLIT_PROGRAMS and each chunk still gets SPLIT_MIN_CHUNK elements.

Outer and inner indices are recovered from the flat block offsets by division
and remainder by the domain sizes (only for the axes a body uses); a load or store
that walks its buffer contiguously uses the flat offset itself.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from nngraph.types import is_float
from passes.split_reduce import SplitPlan, split_plan

from .body import BodyPrinter, CodegenError, Val, live_instrs, stage_roots
from .index_width import launcher_line, prologue
from .names import jit_decorator, paren, prod_expr, size_expr, symbol_name, symbols_of
from .scalar_ops import TL_DTYPE, identity

BIG = "2147483647"      # the index no real one beats: 'no index yet' for argmax
_TORCH = {"float32": "torch.float32", "float64": "torch.float64", "int32": "torch.int32",
          "int64": "torch.int64", "bool": "torch.bool"}


def is_pointwise(kernel) -> bool:
    return all(not s.reduce and not s.inner for s in kernel.stages)


def program_split(kernel) -> SplitPlan | None:
    """The kernel's split plan (passes/split_reduce.py) where the part + combine pair
    can run it: every stage with an inner domain is chunked (the combine launch has no
    inner loop; it runs the finishing stages, so stores keep their order), and no store
    accumulates (a scatter-add's zeros and additions must not be cut into chunks)."""
    plan = split_plan(kernel)
    if plan is None or any(s.inner for s in plan.finishing(kernel)):
        return None
    if any(x.accumulate for s in kernel.stages for x in s.stores):
        return None
    return plan


@dataclass(frozen=True)
class Partial:
    """The scratch of one reduction slot in the split scheme: [parts, rows] values
    (and, for argmax, their int32 indices); `kind` is the slot's combine rule."""
    stage: int
    slot: int
    kind: str
    dtype: str
    name: str
    index_name: str | None


def _referenced(lines, names) -> set:
    """Positions of the names that occur as words in the lines."""
    text = "\n".join(lines)
    return {j for j, n in enumerate(names) if re.search(rf"\b{n}\b", text)}


def _decompose(flat: str, sizes, names, used, group) -> tuple:
    """Lines computing the used axis indices from a flat offset; {axis: Val}."""
    lines, vals = [], {}
    n = len(sizes)
    for j in range(n):
        name = names[j]
        if sizes[j] == 1:
            vals[j] = Val("0", "int32", frozenset(), index=True, literal=True, nonneg=True, value=0)
            continue
        vals[j] = Val(name, "int32", frozenset({group}), index=True, nonneg=True)
        if j not in used:
            continue
        inner = prod_expr(sizes[j + 1:])
        e = flat if inner == "1" else f"{flat} // {paren(inner)}"
        if j > 0:
            e = f"{paren(e) if inner != '1' else e} % {paren(size_expr(sizes[j]))}"
        lines.append(f"{name} = {e}")
    return lines, vals


def _buffers_of(stages) -> list:
    """Buffers in order of first use (loads and stores): a kernel's pointer arguments."""
    out = []
    for st in stages:
        for ins in st.body:
            if ins.op == "load" and ins.attr("buffer") not in out:
                out.append(ins.attr("buffer"))
        for s in st.stores:
            if s.buffer not in out:
                out.append(s.buffer)
    return out


class LoopKernelPrinter:
    def __init__(self, program, kernel, fname, bufnames):
        self.p, self.k, self.fname, self.bufnames = program, kernel, fname, bufnames
        self.pointwise = is_pointwise(kernel)
        self.plan = None if self.pointwise else program_split(kernel)
        self.split = self.plan is not None
        self.helpers = set()
        self.nouter = len(kernel.outer)
        self.buffers = _buffers_of(kernel.stages)
        self.partials = self._partials() if self.split else []

    def ptr(self, bid):
        return f"{self.bufnames[bid]}_ptr", self.p.buffers[bid]

    def _partials(self) -> list:
        """One Partial per reduction slot of the stages with an inner domain, named
        apart from the buffers' pointer arguments."""
        taken = {f"{n}_ptr" for n in self.bufnames.values()}

        def fresh(name):
            while f"{name}_ptr" in taken:
                name = "_" + name
            taken.add(f"{name}_ptr")
            return name

        out = []
        for a in self.plan.accumulators:
            iname = fresh(f"partials{a.stage}_{a.slot}_idx") if a.combine == "argmax" else None
            out.append(Partial(a.stage, a.slot, a.combine, a.dtype, fresh(f"partials{a.stage}_{a.slot}"), iname))
        return out

    def partial_args(self) -> list:
        return [f"{n}_ptr" for p in self.partials for n in (p.name, p.index_name) if n]

    def symbols(self) -> list:
        syms = symbols_of(self.k.outer)
        for st in self.k.stages:
            syms |= symbols_of(st.inner)
            for ins in st.body:
                if ins.op == "size":
                    syms |= symbols_of([ins.attr("size")])
        for b in self.buffers:
            syms |= symbols_of(self.p.buffers[b].shape)
        return sorted(syms)

    # ------------------------------------------------------------------ kernels
    def kernel_source(self) -> str:
        """The row (or pointwise) kernel, then the split pair where the kernel has one."""
        srcs = [self._kernel(self.fname, "rows")]
        if self.split:
            srcs += [self._kernel(f"{self.fname}_part", "part"), self._kernel(f"{self.fname}_combine", "combine")]
        return "\n\n".join(srcs)

    def _mode_buffers(self, mode) -> list:
        if mode == "part":
            return _buffers_of([s for s in self.k.stages if s.inner])
        if mode == "combine":
            return _buffers_of([s for s in self.k.stages if not s.inner])
        return self.buffers

    def _kernel(self, fname, mode) -> str:
        """mode 'rows': every stage, one program per XBLOCK outer points; 'part': the
        stages with an inner domain over chunk program_id(0) of it, partials stored;
        'combine': the partials folded, then the stages with no inner domain."""
        k = self.k
        syms = self.symbols()
        extra = {"part": ["CHUNK"], "combine": ["nparts"]}.get(mode, [])
        args = ([self.ptr(b)[0] for b in self._mode_buffers(mode)] + (self.partial_args() if mode != "rows" else [])
                + [symbol_name(s) for s in syms] + extra)
        consts = ["XBLOCK: tl.constexpr"] + ([] if self.pointwise else ["RBLOCK: tl.constexpr"]) \
            + ["INDEX64: tl.constexpr"]
        out = [jit_decorator(syms, extra), f"def {fname}({', '.join(args + consts)}):"]
        out.append(f"    # {k.name} over [{', '.join(map(str, k.outer))}]" + (f": {k.source}" if k.source else ""))
        if mode == "part":
            out.append("    # split, 1 of 2: program (c, i) reduces chunk c of rows block i into the partials")
        elif mode == "combine":
            out.append("    # split, 2 of 2: fold each row's partials, then the stages with no inner domain")
        pid = "tl.program_id(1)" if mode == "part" else "tl.program_id(0)"
        out += prologue([("pid", pid)], syms, ["CHUNK"] if mode == "part" else [])
        out.append(f"    xnumel = {prod_expr(k.outer)}")
        if self.pointwise:
            out.append("    xoffs = pid * XBLOCK + tl.arange(0, XBLOCK)")
        else:
            out.append("    xoffs = pid * XBLOCK + tl.arange(0, XBLOCK)[:, None]")
        out.append("    xmask = xoffs < xnumel")
        if mode == "part":
            out.append("    rfirst = tl.program_id(0) * CHUNK")   # int64 when CHUNK is (INDEX64)
        rest = self._stages(mode)
        xnames = [f"x{j}" for j in range(self.nouter)]
        lines, _ = _decompose("xoffs", list(k.outer), xnames, _referenced(rest, xnames), "x")
        out += ["    " + ln for ln in lines] + rest
        return "\n".join(out) + "\n"

    def _stages(self, mode) -> list:
        """The stages' code for one kernel of `mode` (outer indices not yet recovered)."""
        k = self.k
        xnames = [f"x{j}" for j in range(self.nouter)]
        _, outer_vals = _decompose("xoffs", list(k.outer), xnames, (), "x")
        results, rest = {}, []
        multi = len(k.stages) > 1
        for s_no, st in enumerate(k.stages):
            if (mode == "part" and not st.inner) or (mode == "combine" and st.inner and not st.reduce):
                continue
            if multi:
                what = (" reduce " + ", ".join(r[0] for r in st.reduce)) if st.reduce else " map"
                over = f" over [{', '.join(map(str, st.inner))}]" if st.inner else ""
                note = " (its partials)" if mode == "combine" and st.inner else ""
                rest.append(f"    # stage {s_no}:{what}{over}{note}")
            if s_no and any(x.accumulate for x in st.stores):
                rest.append("    tl.debug_barrier()  # the earlier stages' stores before these additions")
            if mode == "combine" and st.inner:
                self.combine(rest, s_no, st, results)
            else:
                live = live_instrs(st.body, stage_roots(st))
                self.stage(rest, s_no, st, live, f"s{s_no}v" if multi else "v", outer_vals, results, mode)
        return rest

    def stage(self, out, s_no, st, live, prefix, outer_vals, results, mode="rows"):
        ninner = len(st.inner)
        outer_list = [outer_vals[j] for j in range(self.nouter)]
        masks = {"x": "xmask"}
        zero = {"x": "xoffs * 0"}
        if not st.inner:
            axis_vals = dict(outer_vals)
            patterns = [(outer_list, self.k.outer, "xoffs")]
            indent = "    "
            body_out = out
        else:
            rnumel = f"rnumel{s_no}" if len(self.k.stages) > 1 else "rnumel"
            out.append(f"    {rnumel} = {prod_expr(st.inner)}")
            rnames = [f"r{j}" for j in range(ninner)]
            _, inner_vals = _decompose("roffs", list(st.inner), rnames, (), "r")
            inner_list = [inner_vals[j] for j in range(ninner)]
            axis_vals = dict(outer_vals)
            axis_vals.update({self.nouter + j: v for j, v in inner_vals.items()})
            masks["r"] = "rmask"
            zero["r"] = "roffs * 0"
            patterns = [(outer_list, self.k.outer, "xoffs"), (inner_list, st.inner, "roffs"),
                        (outer_list + inner_list, tuple(self.k.outer) + tuple(st.inner),
                         f"xoffs * {paren(rnumel)} + roffs")]
            accs = self.acc_init(out, s_no, st.reduce, body_dtypes(st))
            span = "rfirst, rfirst + CHUNK" if mode == "part" else f"0, {rnumel}"
            out.append(f"    for rstart in range({span}, RBLOCK):")
            out.append("        roffs = rstart + tl.arange(0, RBLOCK)[None, :]")
            out.append(f"        rmask = roffs < {rnumel}")
            indent = "        "
            body_out = []

        def axis(a):
            if a not in axis_vals:
                raise CodegenError(f"kernel {self.k.name}: loop index {a} is out of range")
            return axis_vals[a]

        bp = BodyPrinter(body_out, indent, prefix, axis, lambda s, j: results[(s, j)], None,
                         self.ptr, masks, zero)
        vals = bp.print(st.body, live, patterns)
        for store in st.stores:      # map and reduce stages alike: at every inner point
            bp.store(store, vals, patterns)
        self.helpers |= bp.helpers
        if st.inner:
            if st.reduce:
                self.accumulate(body_out, st.reduce, vals, accs)
            lines, _ = _decompose("roffs", list(st.inner), rnames, _referenced(body_out, rnames), "r")
            out += ["        " + ln for ln in lines] + body_out
            if st.reduce:
                self.finish(out, s_no, st.reduce, accs, results, values=mode == "part")
                if mode == "part":
                    self.store_partials(out, s_no, results)
        elif st.reduce:
            self.single_point(out, s_no, st, vals, results)

    # ------------------------------------------------------------------ reductions
    def acc_init(self, out, s_no, reduce, dtypes) -> list:
        accs = []
        for j, r in enumerate(reduce):
            kind = r[0]
            dt = dtypes[r[1]]
            name = f"acc{s_no}_{j}"
            if kind == "sum":
                out.append(f"    {name} = tl.zeros([XBLOCK, RBLOCK], {TL_DTYPE[dt]})")
            else:
                out.append(f"    {name} = tl.full([XBLOCK, RBLOCK], {identity(kind, dt)}, {TL_DTYPE[dt]})")
            idx = None
            if kind == "argmax":
                idx = f"acci{s_no}_{j}"
                out.append(f"    {idx} = tl.full([XBLOCK, RBLOCK], {BIG}, tl.int32)")
            accs.append((name, idx, dt))
        return accs

    def accumulate(self, out, reduce, vals, accs):
        """Folds one block of values (masked lanes read as the identity) into the accumulators."""
        ind = "        "
        for r, (name, idx, dt) in zip(reduce, accs):
            kind, v = r[0], vals[r[1]]
            src = v.expr if (v.dtype == dt and not v.literal) else f"{paren(v.expr)}"
            masked = f"tl.where(rmask, {src}, {identity(kind, dt)})"
            if (v.dtype != dt or v.index) and not v.literal:   # an index may be int64 (INDEX64)
                masked += f".to({TL_DTYPE[dt]})"
            if kind == "sum":
                out.append(f"{ind}{name} = {name} + {masked}")
            elif kind in ("max", "min"):
                fn = "tl.maximum" if kind == "max" else "tl.minimum"
                nan = ", propagate_nan=tl.PropagateNan.ALL" if is_float(dt) else ""
                out.append(f"{ind}{name} = {fn}({name}, {masked}{nan})")
            elif kind == "argmax":
                iv = vals[r[2]]
                out.append(f"{ind}val = {masked}")
                out.append(f"{ind}vidx = {iv.expr if iv.literal else paren(iv.expr) + '.to(tl.int32)'}")
                out.append(f"{ind}take = {_argmax_take(name, idx, dt)}")
                out.append(f"{ind}{name} = tl.where(take, val, {name})")
                out.append(f"{ind}{idx} = tl.where(take, vidx, {idx})")
            else:
                raise CodegenError(f"unknown reduction '{kind}'")

    def finish(self, out, s_no, reduce, accs, results, values=False):
        """Folds the accumulators along the block into res{s}_{j} ([XBLOCK, 1]); with
        `values`, argmax also leaves its best value (NaN where the row has one) in
        res{s}_{j}_val, for a partial."""
        for j, (r, (name, idx, dt)) in enumerate(zip(reduce, accs)):
            kind = r[0]
            res = f"res{s_no}_{j}"
            isf = is_float(dt)
            if kind == "sum":
                out.append(f"    {res} = tl.sum({name}, 1)[:, None]")
                results[(s_no, j)] = Val(res, dt, frozenset({"x"}))
            elif kind in ("max", "min"):
                out.append(f"    {res} = tl.{kind}({name}, 1)[:, None]")
                if isf:   # a NaN anywhere in the row makes the row's max NaN, as in NumPy
                    out.append(f"    {res} = tl.where(tl.max(({name} != {name}).to(tl.int32), 1)[:, None] > 0, "
                               f"float(\"nan\"), {res})")
                results[(s_no, j)] = Val(res, dt, frozenset({"x"}))
            else:  # argmax: the first index that attains the max (or the first NaN)
                out.append(f"    best = tl.max({name}, 1)[:, None]")
                out.append(f"    {res} = tl.min(tl.where({name} == best, {idx}, {BIG}), 1)[:, None]")
                if isf:
                    out.append(f"    first_nan = tl.min(tl.where({name} != {name}, {idx}, {BIG}), 1)[:, None]")
                    out.append(f"    {res} = tl.where(first_nan < {BIG}, first_nan, {res})")
                if values:   # a partial keeps 'no index' for an empty chunk; the combine folds it away
                    best = f"tl.where(first_nan < {BIG}, float(\"nan\"), best)" if isf else "best"
                    out.append(f"    {res}_val = {best}")
                else:        # an empty row has no argmax: 0, a valid index
                    out.append(f"    {res} = tl.where({res} == {BIG}, 0, {res})")
                results[(s_no, j)] = Val(res, "int32", frozenset({"x"}), index=True)

    def single_point(self, out, s_no, st, vals, results):
        """A reduce stage with an empty inner domain reduces one point: the value itself."""
        for j, r in enumerate(st.reduce):
            v = vals[r[2]] if r[0] == "argmax" else vals[r[1]]
            res = f"res{s_no}_{j}"
            dt = "int32" if r[0] == "argmax" else v.dtype
            out.append(f"    {res} = {paren(v.expr)} + tl.zeros([XBLOCK, 1], {TL_DTYPE[dt]})")
            results[(s_no, j)] = Val(res, dt, frozenset({"x"}), index=r[0] == "argmax")

    # ------------------------------------------------------------------ split scheme
    def store_partials(self, out, s_no, results):
        """Part kernel: this chunk's results of stage s_no, at [chunk, row] of each partial."""
        for p in self.partials:
            if p.stage != s_no:
                continue
            at = "tl.program_id(0) * xnumel + xoffs"
            res = results[(s_no, p.slot)].expr
            if p.index_name:
                out.append(f"    tl.store({p.name}_ptr + {at}, {res}_val, mask=xmask)")
                out.append(f"    tl.store({p.index_name}_ptr + {at}, {res}, mask=xmask)")
            else:
                out.append(f"    tl.store({p.name}_ptr + {at}, {res}, mask=xmask)")

    def combine(self, out, s_no, st, results):
        """Combine kernel: stage s_no's results from its `nparts` partials per row, folded
        as the stage folds its values (so NaN and first-index rules carry over)."""
        mine = [p for p in self.partials if p.stage == s_no]
        reduce = [(p.kind, 2 * n, 2 * n + 1) for n, p in enumerate(mine)]
        dtypes = {2 * n: p.dtype for n, p in enumerate(mine)}
        accs = self.acc_init(out, s_no, reduce, dtypes)
        out.append("    for rstart in range(0, nparts, RBLOCK):")
        out.append("        roffs = rstart + tl.arange(0, RBLOCK)[None, :]")
        out.append("        rmask = roffs < nparts")
        vals = {}
        for n, p in enumerate(mine):
            v = f"part{s_no}_{p.slot}"
            out.append(f"        {v} = tl.load({p.name}_ptr + roffs * xnumel + xoffs, mask=xmask & rmask, "
                       f"other={identity(p.kind, p.dtype)})")
            vals[2 * n] = Val(v, p.dtype, frozenset({"x", "r"}))
            if p.index_name:
                out.append(f"        parti{s_no}_{p.slot} = tl.load({p.index_name}_ptr + roffs * xnumel + xoffs, "
                           f"mask=xmask & rmask, other={BIG})")
                vals[2 * n + 1] = Val(f"parti{s_no}_{p.slot}", "int32", frozenset({"x", "r"}), index=True)
        self.accumulate(out, reduce, vals, accs)
        self.finish(out, s_no, reduce, accs, results)

    # ------------------------------------------------------------------ launcher
    def launcher_source(self) -> str:
        syms = [symbol_name(s) for s in self.symbols()]
        k = self.k
        out = [f"def launch_{self.fname}(b{''.join(', ' + s for s in syms)}):"]
        out.append(f"    xnumel = {prod_expr(k.outer)}")
        counts = [prod_expr(self.p.buffers[b].shape) for b in self.buffers]
        if self.pointwise:
            out.append(launcher_line(["xnumel"] + counts))
            out.append("    XBLOCK = min(XBLOCK_MAX, triton.next_power_of_2(max(xnumel, 1)))")
            out.append("    if xnumel:")
            out.append(f"        {self.fname}[(triton.cdiv(xnumel, XBLOCK),)]({self.call_args('rows')}, XBLOCK=XBLOCK, "
                       "INDEX64=INDEX64)")
            return "\n".join(out) + "\n"
        inners = list(dict.fromkeys(prod_expr(st.inner) for st in k.stages if st.inner)) or ["1"]
        rn = inners[0] if len(inners) == 1 else f"max({', '.join(inners)})"
        out.append(f"    rnumel = {rn}")
        out.append(launcher_line(["xnumel * rnumel"] + counts))
        out.append("    RBLOCK = min(RBLOCK_MAX, triton.next_power_of_2(max(rnumel, 1)))")
        out.append("    XBLOCK = min(triton.next_power_of_2(max(xnumel, 1)), max(1, TILE // RBLOCK))")
        warps = "num_warps=8 if XBLOCK * RBLOCK >= 4096 else 4"
        rows = (f"{self.fname}[(triton.cdiv(xnumel, XBLOCK),)]({self.call_args('rows')}, "
                f"XBLOCK=XBLOCK, RBLOCK=RBLOCK, INDEX64=INDEX64, {warps})")
        if not self.split:
            out.append("    if xnumel:")
            out.append(f"        {rows}")
            return "\n".join(out) + "\n"
        out.append("    if not xnumel:")
        out.append("        return")
        out.append("    nparts, CHUNK, RBLOCK = _split(xnumel, XBLOCK, rnumel, RBLOCK)")
        out.append("    if nparts == 1:")
        out.append(f"        {rows}")
        out.append("        return")
        out += self.split_launch(warps)
        return "\n".join(out) + "\n"

    def call_args(self, mode) -> str:
        extra = {"part": ["CHUNK"], "combine": ["nparts"]}.get(mode, [])
        names = [f"b[{self.bufnames[x]!r}]" for x in self._mode_buffers(mode)]
        names += [n for p in self.partials for n in (p.name, p.index_name) if n] if mode != "rows" else []
        return ", ".join(names + [symbol_name(s) for s in self.symbols()] + extra)

    def split_launch(self, warps) -> list:
        """Launcher lines for the split pair: scratch for the partials, then both kernels."""
        first = self.bufnames[self.buffers[0]] if self.buffers else None
        out = [f"    device = b[{first!r}].device" if first else "    device = DEVICE"]
        for p in self.partials:
            out.append(f"    {p.name} = torch.empty((nparts, xnumel), dtype={_TORCH[p.dtype]}, device=device)")
            if p.index_name:
                out.append(f"    {p.index_name} = torch.empty((nparts, xnumel), dtype=torch.int32, device=device)")
        out.append(f"    {self.fname}_part[(nparts, triton.cdiv(xnumel, XBLOCK))]({self.call_args('part')}, "
                   f"XBLOCK=XBLOCK, RBLOCK=RBLOCK, INDEX64=INDEX64, {warps})")
        out.append("    RBLOCK = min(RBLOCK_MAX, triton.next_power_of_2(nparts))")
        out.append("    XBLOCK = min(triton.next_power_of_2(xnumel), max(1, TILE // RBLOCK))")
        out.append(f"    {self.fname}_combine[(triton.cdiv(xnumel, XBLOCK),)]({self.call_args('combine')}, "
                   f"XBLOCK=XBLOCK, RBLOCK=RBLOCK, INDEX64=INDEX64)")
        return out


def _argmax_take(acc: str, acci: str, dt: str) -> str:
    """Whether a lane takes (val, vidx), by the argmax rule of nngraph/semantics.py: a
    valid lane with a greater value, or an equal one with a smaller index (the first
    wins ties); for floats a NaN beats any number and the first NaN beats later ones."""
    take = f"(val > {acc}) | ((val == {acc}) & (vidx < {acci}))"
    if is_float(dt):
        take += f" | ((val != val) & (({acc} == {acc}) | (vidx < {acci})))"
    return f"rmask & ({take})"


def body_dtypes(st) -> dict:
    return {k: ins.dtype for k, ins in enumerate(st.body)}
