"""MatmulKernel -> a tiled Triton matmul (tl.dot) with its fused epilogue, and its launcher.

One program computes a BM x BN tile of one batch entry (program_id(1) is the flat
batch index): it walks K in steps of BK, loading masked tiles of A and B through
their strides (a transposed operand is the same buffer walked with swapped
strides; a broadcast batch axis has stride 0), accumulates with tl.dot, applies
alpha and beta, then runs the epilogue body on the tile (bias, activation,
parameter update) and stores. Integer operands (and float64, which tensor cores
do not take) use a broadcast multiply-and-sum instead of tl.dot.
"""
from __future__ import annotations

from passes.program import contraction_sizes

from .body import BodyPrinter, Val, live_instrs, stage_roots
from .index_width import launcher_line, prologue
from .names import jit_decorator, paren, prod_expr, size_expr, symbol_name, symbols_of
from .scalar_ops import TL_DTYPE, literal


class MatmulPrinter:
    def __init__(self, program, kernel, fname, bufnames):
        self.p, self.k, self.fname, self.bufnames = program, kernel, fname, bufnames
        self.helpers = set()
        self.buffers = [kernel.a]
        for b in [kernel.b, kernel.out]:
            if b not in self.buffers:
                self.buffers.append(b)
        if kernel.epilogue:
            for ins in kernel.epilogue.body:
                if ins.op == "load" and ins.attr("buffer") not in self.buffers:
                    self.buffers.append(ins.attr("buffer"))
            for s in kernel.epilogue.stores:
                if s.buffer not in self.buffers:
                    self.buffers.append(s.buffer)

    def ptr(self, bid):
        return f"{self.bufnames[bid]}_ptr", self.p.buffers[bid]

    def symbols(self) -> list:
        k = self.k
        syms = symbols_of(tuple(k.batch) + (k.m, k.n) + contraction_sizes(k))
        for b in self.buffers:
            syms |= symbols_of(self.p.buffers[b].shape)
        if k.epilogue:
            for ins in k.epilogue.body:
                if ins.op == "size":
                    syms |= symbols_of([ins.attr("size")])
        return sorted(syms)

    def batch_offset(self, bid, nb) -> str:
        """Offset of the current batch entry in buffer `bid` (broadcast axes: stride 0)."""
        shape = list(self.p.buffers[bid].shape)
        bshape = shape[:-2]
        terms = []
        for t in range(nb):
            j = t - (nb - len(bshape))          # the buffer's batch axis aligned with output axis t
            if j < 0 or bshape[j] == 1:
                continue
            stride = prod_expr(shape[j + 1:])
            terms.append(f"bi{t}" if stride == "1" else f"bi{t} * {paren(stride)}")
        return " + ".join(terms) if terms else "0"

    def kernel_source(self) -> str:
        k, p = self.k, self.p
        nb = len(k.batch)
        dt = p.buffers[k.out].dtype
        args = [self.ptr(b)[0] for b in self.buffers] + [symbol_name(s) for s in self.symbols()]
        a_ptr, b_ptr, c_ptr = self.ptr(k.a)[0], self.ptr(k.b)[0], self.ptr(k.out)[0]
        consts = ["BM: tl.constexpr", "BN: tl.constexpr", "BK: tl.constexpr", "PRECISION: tl.constexpr",
                  "INDEX64: tl.constexpr"]
        o = [jit_decorator(self.symbols()), f"def {self.fname}({', '.join(args + consts)}):"]
        ta, tb = "ᵀ" if k.trans_a else "", "ᵀ" if k.trans_b else ""
        o.append(f"    # {k.name}: {self.bufnames[k.out]} = {k.alpha!r} * {self.bufnames[k.a]}{ta} @ "
                 f"{self.bufnames[k.b]}{tb}" + (f" + {k.beta!r} * {self.bufnames[k.out]}" if k.beta else "")
                 + (f"  ({k.source})" if k.source else ""))
        o += prologue([("pid", "tl.program_id(0)")] + ([("bid", "tl.program_id(1)")] if nb else []), self.symbols())
        o.append(f"    mnumel = {size_expr(k.m)}")
        o.append(f"    nnumel = {size_expr(k.n)}")
        o.append(f"    knumel = {prod_expr(contraction_sizes(k))}")
        o.append("    pid_m = pid // tl.cdiv(nnumel, BN)")
        o.append("    pid_n = pid % tl.cdiv(nnumel, BN)")
        if nb:
            for t in range(nb):
                inner = prod_expr(k.batch[t + 1:])
                e = "bid" if inner == "1" else f"bid // {paren(inner)}"
                if t > 0:
                    e = f"{paren(e) if inner != '1' else e} % {paren(size_expr(k.batch[t]))}"
                o.append(f"    bi{t} = {e}")
        o.append("    rm = pid_m * BM + tl.arange(0, BM)[:, None]")
        o.append("    rn = pid_n * BN + tl.arange(0, BN)[None, :]")
        o.append("    rk = tl.arange(0, BK)")
        o.append("    mmask = rm < mnumel")
        o.append("    nmask = rn < nnumel")
        # A[i, k] is a[i * K + k] (or a[k * M + i] when the buffer holds Aᵀ); likewise B
        sam, sak = ("1", "mnumel") if k.trans_a else ("knumel", "1")
        sbk, sbn = ("1", "knumel") if k.trans_b else ("nnumel", "1")
        a_base = self.batch_offset(k.a, nb)
        b_base = self.batch_offset(k.b, nb)
        c_base = self.batch_offset(k.out, nb)

        def term(idx, stride):
            return idx if stride == "1" else f"{idx} * {stride}"

        a_addr = " + ".join(x for x in [a_ptr, a_base if a_base != "0" else "",
                                        term("rm", sam), term("rk[None, :]", sak)] if x)
        b_addr = " + ".join(x for x in [b_ptr, b_base if b_base != "0" else "",
                                        term("rk[:, None]", sbk), term("rn", sbn)] if x)
        o.append(f"    a_ptrs = {a_addr}")
        o.append(f"    b_ptrs = {b_addr}")
        acc_dt = dt
        o.append(f"    acc = tl.zeros([BM, BN], {TL_DTYPE[acc_dt]})")
        zero = literal(0, dt)
        o.append("    for kstart in range(0, knumel, BK):")
        o.append(f"        a = tl.load(a_ptrs, mask=mmask & (rk[None, :] < knumel - kstart), other={zero})")
        o.append(f"        b = tl.load(b_ptrs, mask=(rk[:, None] < knumel - kstart) & nmask, other={zero})")
        for name, bid in (("a", k.a), ("b", k.b)):
            if p.buffers[bid].dtype != dt:
                o.append(f"        {name} = {name}.to({TL_DTYPE[dt]})")
        if dt == "float32":
            o.append("        acc = tl.dot(a, b, acc, input_precision=PRECISION)")
        else:
            o.append("        acc += tl.sum(a[:, :, None] * b[None, :, :], 1)")
        o.append("        a_ptrs += BK" + ("" if sak == "1" else f" * {sak}"))
        o.append("        b_ptrs += BK" + ("" if sbk == "1" else f" * {sbk}"))
        c_off = (f"{c_base} + " if c_base != "0" else "") + "rm * nnumel + rn"
        c = "acc"
        if k.alpha != 1:
            o.append(f"    c = acc * {literal(k.alpha, dt)}")
            c = "c"
        if k.beta:
            beta = "" if k.beta == 1 else f"{literal(k.beta, dt)} * "
            o.append(f"    c = {c} + {beta}tl.load({c_ptr} + {c_off}, mask=mmask & nmask, other={zero})")
            c = "c"
        if k.epilogue is None:
            o.append(f"    tl.store({c_ptr} + {c_off}, {c}, mask=mmask & nmask)")
        else:
            self.epilogue(o, nb, dt, c)
        return "\n".join(o) + "\n"

    def epilogue(self, o, nb, dt, c):
        k = self.k
        st = k.epilogue
        axes = {t: Val(f"bi{t}", "int32", frozenset(), index=True, nonneg=True) for t in range(nb)}
        axes[nb] = Val("rm", "int32", frozenset({"m"}), index=True, nonneg=True)
        axes[nb + 1] = Val("rn", "int32", frozenset({"n"}), index=True, nonneg=True)
        acc = Val(c, dt, frozenset({"m", "n"}))
        live = live_instrs(st.body, stage_roots(st))
        o.append("    # epilogue")
        bp = BodyPrinter(o, "    ", "v", lambda a: axes[a], None, acc, self.ptr,
                         {"m": "mmask", "n": "nmask"}, {"m": "rm * 0", "n": "rn * 0"})
        out_buf = self.p.buffers[k.out]
        tile = [axes[t] for t in range(nb + 2)]
        patterns = [(tile, out_buf.shape, ((self.batch_offset(k.out, nb) + " + ") if nb and
                                           self.batch_offset(k.out, nb) != "0" else "") + "rm * nnumel + rn")]
        vals = bp.print(st.body, live, patterns)
        for s in st.stores:
            bp.store(s, vals, patterns)
        self.helpers |= bp.helpers

    def launcher_source(self) -> str:
        k = self.k
        syms = [symbol_name(s) for s in self.symbols()]
        out = [f"def launch_{self.fname}(b{''.join(', ' + s for s in syms)}):"]
        out.append(f"    mnumel, nnumel, knumel = {size_expr(k.m)}, {size_expr(k.n)}, {prod_expr(contraction_sizes(k))}")
        out.append(f"    batch = {prod_expr(k.batch)}")
        out.append("    BM, BN, BK = _mm_blocks(mnumel, nnumel, knumel)")
        out.append(launcher_line([prod_expr(self.p.buffers[b].shape) for b in self.buffers]))
        call_args = ", ".join([f"b[{self.bufnames[x]!r}]" for x in self.buffers] + syms)
        out.append("    if mnumel and nnumel and batch:")
        out.append(f"        {self.fname}[(triton.cdiv(mnumel, BM) * triton.cdiv(nnumel, BN), batch)]({call_args}, "
                   "BM=BM, BN=BN, BK=BK, PRECISION=DOT_PRECISION, INDEX64=INDEX64)")
        return "\n".join(out) + "\n"
