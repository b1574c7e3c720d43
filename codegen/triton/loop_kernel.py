"""LoopKernel -> a Triton kernel and its launcher.

Two shapes of kernel, as in the Triton tutorials:

- pointwise (every stage a map with no inner domain): one program per XBLOCK
  consecutive outer points, a 1-d block with a mask for the ragged end;
- row kernels (any reduce stage or inner domain): one program per XBLOCK outer
  points (rows) and, for each stage in order, a loop over the stage's inner domain
  in blocks of RBLOCK; reduce stages accumulate a [XBLOCK, RBLOCK] block and fold
  it at the end of their loop, so softmax, log_softmax and cross-entropy are one
  kernel with one pass per stage over each row, and rows of any length work.

Outer and inner indices are recovered from the flat block offsets by division
and remainder by the domain sizes (only for the axes a body uses); a load or store
that walks its buffer contiguously uses the flat offset itself.
"""
from __future__ import annotations

import re

from .body import BodyPrinter, CodegenError, Val, live_instrs, stage_roots
from .names import jit_decorator, paren, prod_expr, size_expr, symbols_of
from .scalar_ops import TL_DTYPE, identity


def is_pointwise(kernel) -> bool:
    return all(not s.reduce and not s.inner for s in kernel.stages)


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
            vals[j] = Val("0", "int32", frozenset(), index=True, literal=True, nonneg=True)
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


class LoopKernelPrinter:
    def __init__(self, program, kernel, fname, bufnames):
        self.p, self.k, self.fname, self.bufnames = program, kernel, fname, bufnames
        self.pointwise = is_pointwise(kernel)
        self.helpers = set()
        self.nouter = len(kernel.outer)
        # buffers in order of first use: the kernel's pointer arguments
        self.buffers = []
        for st in kernel.stages:
            for ins in st.body:
                if ins.op == "load" and ins.attr("buffer") not in self.buffers:
                    self.buffers.append(ins.attr("buffer"))
            for s in st.stores:
                if s.buffer not in self.buffers:
                    self.buffers.append(s.buffer)

    def ptr(self, bid):
        return f"{self.bufnames[bid]}_ptr", self.p.buffers[bid]

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

    def live(self):
        """Per stage: the live instructions (what its stores and reductions need)."""
        return [live_instrs(st.body, stage_roots(st)) for st in self.k.stages]

    # ------------------------------------------------------------------ kernel
    def kernel_source(self) -> str:
        k = self.k
        syms = self.symbols()
        from .names import symbol_name
        args = [self.ptr(b)[0] for b in self.buffers] + [symbol_name(s) for s in syms]
        consts = ["XBLOCK: tl.constexpr"] + ([] if self.pointwise else ["RBLOCK: tl.constexpr"])
        out = [jit_decorator(syms), f"def {self.fname}({', '.join(args + consts)}):"]
        doc = f"over [{', '.join(map(str, k.outer))}]" + (f": {k.source}" if k.source else "")
        out.append(f"    # {k.name} {doc}")
        out.append(f"    xnumel = {prod_expr(k.outer)}")
        if self.pointwise:
            out.append("    xoffs = tl.program_id(0) * XBLOCK + tl.arange(0, XBLOCK)")
        else:
            out.append("    xoffs = tl.program_id(0) * XBLOCK + tl.arange(0, XBLOCK)[:, None]")
        out.append("    xmask = xoffs < xnumel")
        lives = self.live()
        xnames = [f"x{j}" for j in range(self.nouter)]
        _, outer_vals = _decompose("xoffs", list(k.outer), xnames, (), "x")
        outer_list = [outer_vals[j] for j in range(self.nouter)]
        results = {}
        multi = len(k.stages) > 1
        rest = []
        for s_no, (st, live) in enumerate(zip(k.stages, lives)):
            prefix = f"s{s_no}v" if multi else "v"
            if multi:
                what = (" reduce " + ", ".join(r[0] for r in st.reduce)) if st.reduce else " map"
                rest.append(f"    # stage {s_no}:{what}" + (f" over [{', '.join(map(str, st.inner))}]"
                                                           if st.inner else ""))
            self.stage(rest, s_no, st, live, prefix, outer_vals, outer_list, results)
        # the outer indices the code reads, recovered from the flat offset
        lines, _ = _decompose("xoffs", list(k.outer), xnames, _referenced(rest, xnames), "x")
        out += ["    " + ln for ln in lines] + rest
        return "\n".join(out) + "\n"

    def stage(self, out, s_no, st, live, prefix, outer_vals, outer_list, results):
        ninner = len(st.inner)
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
            accs = self.acc_init(out, s_no, st, body_dtypes(st))
            out.append(f"    for rstart in range(0, {rnumel}, RBLOCK):")
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
        for store in st.stores:
            bp.store(store, vals, patterns)
        self.helpers |= bp.helpers
        if st.inner:
            if st.reduce:
                self.accumulate(body_out, s_no, st, vals, accs)
            lines, _ = _decompose("roffs", list(st.inner), rnames, _referenced(body_out, rnames), "r")
            out += ["        " + ln for ln in lines] + body_out
            if st.reduce:
                self.finish(out, s_no, st, vals, accs, results)
        elif st.reduce:
            self.single_point(out, s_no, st, vals, results)

    # ------------------------------------------------------------------ reductions
    def acc_init(self, out, s_no, st, dtypes) -> list:
        accs = []
        for j, r in enumerate(st.reduce):
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
                out.append(f"    {idx} = tl.zeros([XBLOCK, RBLOCK], tl.int32)")
            accs.append((name, idx, dt))
        return accs

    def accumulate(self, out, s_no, st, vals, accs):
        ind = "        "
        for r, (name, idx, dt) in zip(st.reduce, accs):
            kind, v = r[0], vals[r[1]]
            src = v.expr if (v.dtype == dt and not v.literal) else f"{paren(v.expr)}"
            masked = f"tl.where(rmask, {src}, {identity(kind, dt)})"
            if v.dtype != dt and not v.index:
                masked += f".to({TL_DTYPE[dt]})"
            if kind == "sum":
                out.append(f"{ind}{name} = {name} + {masked}")
            elif kind in ("max", "min"):
                fn = "tl.maximum" if kind == "max" else "tl.minimum"
                nan = ", propagate_nan=tl.PropagateNan.ALL" if dt in ("float32", "float64") else ""
                out.append(f"{ind}{name} = {fn}({name}, {masked}{nan})")
            elif kind == "argmax":
                iv = vals[r[2]]
                out.append(f"{ind}val = {masked}")
                take = f"(val > {name})"
                if dt in ("float32", "float64"):
                    take = f"(val > {name}) | ((val != val) & ({name} == {name}))"  # the first NaN wins
                out.append(f"{ind}take = {take}")
                out.append(f"{ind}{name} = tl.where(take, val, {name})")
                iexpr = iv.expr if iv.index else f"{paren(iv.expr)}.to(tl.int32)"
                out.append(f"{ind}{idx} = tl.where(take, {iexpr}, {idx})")
            else:
                raise CodegenError(f"unknown reduction '{kind}'")

    def finish(self, out, s_no, st, vals, accs, results):
        for j, (r, (name, idx, dt)) in enumerate(zip(st.reduce, accs)):
            kind = r[0]
            res = f"res{s_no}_{j}"
            isf = dt in ("float32", "float64")
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
                big = "2147483647"
                out.append(f"    best = tl.max({name}, 1)[:, None]")
                out.append(f"    {res} = tl.min(tl.where({name} == best, {idx}, {big}), 1)[:, None]")
                if isf:
                    out.append(f"    first_nan = tl.min(tl.where({name} != {name}, {idx}, {big}), 1)[:, None]")
                    out.append(f"    {res} = tl.where(first_nan < {big}, first_nan, {res})")
                results[(s_no, j)] = Val(res, "int32", frozenset({"x"}), index=True)

    def single_point(self, out, s_no, st, vals, results):
        """A reduce stage with an empty inner domain reduces one point: the value itself."""
        for j, r in enumerate(st.reduce):
            v = vals[r[2]] if r[0] == "argmax" else vals[r[1]]
            res = f"res{s_no}_{j}"
            dt = "int32" if r[0] == "argmax" else v.dtype
            out.append(f"    {res} = {paren(v.expr)} + tl.zeros([XBLOCK, 1], {TL_DTYPE[dt]})")
            results[(s_no, j)] = Val(res, dt, frozenset({"x"}), index=r[0] == "argmax")

    # ------------------------------------------------------------------ launcher
    def launcher_source(self) -> str:
        from .names import symbol_name
        syms = [symbol_name(s) for s in self.symbols()]
        k = self.k
        out = [f"def launch_{self.fname}(b{''.join(', ' + s for s in syms)}):"]
        out.append(f"    xnumel = {prod_expr(k.outer)}")
        call_args = ", ".join([f"b[{self.bufnames[x]!r}]" for x in self.buffers] + syms)
        if self.pointwise:
            out.append("    XBLOCK = min(XBLOCK_MAX, triton.next_power_of_2(max(xnumel, 1)))")
            out.append("    if xnumel:")
            out.append(f"        {self.fname}[(triton.cdiv(xnumel, XBLOCK),)]({call_args}, XBLOCK=XBLOCK)")
        else:
            inners = list(dict.fromkeys(prod_expr(st.inner) for st in k.stages if st.inner)) or ["1"]
            rn = inners[0] if len(inners) == 1 else f"max({', '.join(inners)})"
            out.append(f"    rnumel = {rn}")
            out.append("    RBLOCK = min(RBLOCK_MAX, triton.next_power_of_2(max(rnumel, 1)))")
            out.append("    XBLOCK = min(triton.next_power_of_2(max(xnumel, 1)), max(1, TILE // RBLOCK))")
            out.append("    if xnumel:")
            out.append(f"        {self.fname}[(triton.cdiv(xnumel, XBLOCK),)]({call_args}, XBLOCK=XBLOCK, "
                       "RBLOCK=RBLOCK, num_warps=8 if XBLOCK * RBLOCK >= 4096 else 4)")
        return "\n".join(out) + "\n"


def body_dtypes(st) -> dict:
    return {k: ins.dtype for k, ins in enumerate(st.body)}
