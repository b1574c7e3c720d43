"""Vectorisable transcendental functions written in IR (no libm calls, so LLVM's
loop vectoriser can widen them): exp, expm1, log, log1p, tanh for f32 and f64.

Each is range reduction plus a polynomial, accurate to a couple of ulp, with the
special values (NaN, +-inf, 0, subnormals) fixed up by selects. The same algorithm
serves both widths; only the constants and polynomial degrees differ.
"""
from __future__ import annotations

import math
import struct

import llvmlite.ir as ir

from .irtypes import F32, I32, I64, call_intrinsic, intrinsic, suffix
from .target import has_feature

# fast-math flag that lets LLVM fuse a multiply and the add that uses it into an
# FMA (one rounding instead of two: never less accurate, half the instructions)
CONTRACT = ("contract",)


class _Spec:
    def __init__(self, t):
        self.t = t
        single = t == F32
        self.ity = I32 if single else I64
        self.mant = 23 if single else 52
        self.bias = 127 if single else 1023
        self.emax_mask = 0xFF if single else 0x7FF
        self.ln2_hi = 0.693359375 if single else 6.93147180369123816490e-01
        self.ln2_lo = -2.12194440e-4 if single else 1.90821492927058770002e-10
        self.exp_lo = -104.0 if single else -746.0      # exp below this is 0
        self.exp_hi = 89.0 if single else 710.0         # exp above this is inf
        self.expm1_big = 20.0 if single else 40.0       # expm1(x) == exp(x) beyond
        self.taylor = 7 if single else 13               # expm1 on |r| <= ln2/2 (omitted term r**8/8! < 0.1 ulp)
        self.atanh_terms = 5 if single else 11          # log on s <= 0.1716
        self.min_normal = 2.0 ** -126 if single else 2.0 ** -1022
        self.sub_scale = 25 if single else 54


class FloatMath:
    """Emit math on one float type with a builder."""

    def __init__(self, b: ir.IRBuilder, t):
        self.b, self.s, self.t = b, _Spec(t), t

    def c(self, v):
        return ir.Constant(self.t, v)

    def ic(self, v):
        return ir.Constant(self.s.ity, v)

    def poly(self, x, coefs):
        """coefs[0] + x*(coefs[1] + x*(...)) by Horner."""
        b = self.b
        acc = self.c(coefs[-1])
        for cf in reversed(coefs[:-1]):   # `contract`: each step may be one FMA
            acc = b.fadd(b.fmul(acc, x, flags=CONTRACT), self.c(cf), flags=CONTRACT)
        return acc

    def pow2i(self, n):
        """2**n for an integer n in the normal exponent range."""
        b, s = self.b, self.s
        bits = b.shl(b.add(n, self.ic(s.bias)), self.ic(s.mant))
        return b.bitcast(bits, self.t)

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    # ------------------------------------------------------------------ exp family
    def clamp(self, x, lo, hi):
        """x limited to [lo, hi], a NaN left NaN: ordered compares and selects, which
        x86 does in one max and one min instruction (minnum/maxnum turn NaN into a
        bound and cost fix-ups)."""
        b = self.b
        x = b.select(b.fcmp_ordered("<", x, self.c(lo)), self.c(lo), x)
        return b.select(b.fcmp_ordered(">", x, self.c(hi)), self.c(hi), x)

    def _reduce(self, x):
        """x = n ln2 + r, |r| <= ln2/2; returns (n as int, n as float, expm1(r)).
        n is rounded by adding 1.5 * 2**mant (the sum's low mantissa bits then hold n,
        ties to even) rather than rint and a float-to-int conversion: the same count of
        instructions, and a NaN x gives some integer n (bits, defined) with NaN r and p,
        so NaN propagates to exp and expm1 without a final select."""
        b, s = self.b, self.s
        xc = self.clamp(x, s.exp_lo, s.exp_hi)
        shifter = 1.5 * 2.0 ** s.mant
        t = b.fadd(b.fmul(xc, self.c(1 / math.log(2)), flags=CONTRACT), self.c(shifter), flags=CONTRACT)
        nf = b.fsub(t, self.c(shifter))
        n = b.sub(b.bitcast(t, s.ity), self.ic(self._bits(shifter)))
        # r = x - n ln2 in two steps (n * ln2_hi is exact), each one FMA
        r = b.fsub(xc, b.fmul(nf, self.c(s.ln2_hi), flags=CONTRACT), flags=CONTRACT)
        r = b.fsub(r, b.fmul(nf, self.c(s.ln2_lo), flags=CONTRACT), flags=CONTRACT)
        coefs = [1.0 / math.factorial(k) for k in range(2, s.taylor + 1)]
        p = b.fadd(r, b.fmul(b.fmul(r, r), self.poly(r, coefs), flags=CONTRACT), flags=CONTRACT)  # expm1(r)
        return n, nf, p

    def _bits(self, v: float) -> int:
        """The bit pattern of float v in this type, as a signed integer."""
        if self.t == F32:
            return struct.unpack("<i", struct.pack("<f", v))[0]
        return struct.unpack("<q", struct.pack("<d", v))[0]

    def _scale(self, n, y):
        """y * 2**n for n in [-150, 128] (f32) / [-1077, 1025] (f64), rounded once (so
        subnormal and overflowing results are right): one vscalef where the CPU has
        AVX-512 (llvm.ldexp; elsewhere LLVM makes it a call per element), else two
        multiplies by powers of two in the normal range."""
        b = self.b
        if has_feature("avx512f"):
            return self._ldexp(y, n)
        n1 = b.ashr(n, self.ic(1))
        return b.fmul(b.fmul(y, self.pow2i(n1)), self.pow2i(b.sub(n, n1)))

    def _ldexp(self, y, n):
        """y * 2**n rounded once (llvm.ldexp: one vscalef with AVX-512)."""
        b = self.b
        fn = intrinsic(b.module, f"llvm.ldexp.{suffix(y.type)}.{suffix(n.type)}", y.type, [y.type, n.type])
        return b.call(fn, [y, n])

    def exp(self, x):
        n, _, p = self._reduce(x)
        return self._scale(n, self.b.fadd(p, self.c(1.0)))     # NaN in, NaN out (_reduce)

    def expm1(self, x, may_be_big=True):
        """2**n p + (2**n - 1), exact near 0; exp(x) itself where x is large (both
        from one range reduction). may_be_big=False: the caller knows x <= 0."""
        b, s = self.b, self.s
        n, _, p = self._reduce(x)
        if has_feature("avx512f"):
            # 2**n, which is 0 or inf at the ends of n's range: y is then -1, or NaN
            # where x > expm1_big, which `big` replaces
            t = self._ldexp(self.c(1.0), n)
        else:
            lo = self.ic(-s.bias + 1)
            hi = self.ic(s.bias)
            t = self.pow2i(b.select(b.icmp_signed("<", n, lo), lo, b.select(b.icmp_signed(">", n, hi), hi, n)))
        y = b.fadd(b.fmul(t, p, flags=CONTRACT), b.fsub(t, self.c(1.0)), flags=CONTRACT)
        if may_be_big:
            big = self._scale(n, b.fadd(p, self.c(1.0)))
            y = b.select(b.fcmp_ordered(">", x, self.c(s.expm1_big)), big, y)
        return y                                                # NaN in, NaN out (_reduce)

    # ------------------------------------------------------------------ log family
    def log(self, x):
        b, s = self.b, self.s
        small = b.fcmp_ordered("<", x, self.c(s.min_normal))
        xs = b.select(small, b.fmul(x, self.c(2.0 ** s.sub_scale)), x)
        eadj = b.select(small, self.ic(-s.sub_scale), self.ic(0))
        bits = b.bitcast(xs, s.ity)
        e = b.sub(b.and_(b.lshr(bits, self.ic(s.mant)), self.ic(s.emax_mask)), self.ic(s.bias))
        mbits = b.or_(b.and_(bits, self.ic((1 << s.mant) - 1)), self.ic(s.bias << s.mant))
        m = b.bitcast(mbits, self.t)
        big = b.fcmp_ordered(">", m, self.c(math.sqrt(2.0)))
        m = b.select(big, b.fmul(m, self.c(0.5)), m)
        e = b.add(b.add(e, eadj), b.zext(big, s.ity))
        f = b.fsub(m, self.c(1.0))
        core = self._log1p_core(f)
        ef = b.sitofp(e, self.t)
        y = b.fadd(b.fmul(ef, self.c(s.ln2_hi)), b.fadd(core, b.fmul(ef, self.c(s.ln2_lo))))
        return self._log_specials(x, y)

    def _log1p_core(self, f):
        """log(1 + f) for f in [sqrt(.5)-1, sqrt(2)-1]: f - s (f - R), s = f/(2+f)."""
        b, s = self.b, self.s
        sv = b.fdiv(f, b.fadd(self.c(2.0), f))
        z = b.fmul(sv, sv)
        coefs = [2.0 / (2 * k + 1) for k in range(1, s.atanh_terms + 1)]
        R = b.fmul(z, self.poly(z, coefs))
        return b.fsub(f, b.fmul(sv, b.fsub(f, R)))

    def _log_specials(self, x, y):
        b = self.b
        y = b.select(b.fcmp_ordered("==", x, self.c(0.0)), self.c(-math.inf), y)
        y = b.select(b.fcmp_ordered("<", x, self.c(0.0)), self.c(math.nan), y)
        y = b.select(b.fcmp_ordered("==", x, self.c(math.inf)), x, y)
        return b.select(self.isnan(x), x, y)

    def log1p(self, x):
        """Goldberg: u = 1 + x; x if u == 1 else log(u) * x / (u - 1)."""
        b = self.b
        u = b.fadd(self.c(1.0), x)
        d = b.fsub(u, self.c(1.0))
        y = b.fmul(self.log(u), b.fdiv(x, d))
        y = b.select(b.fcmp_ordered("==", d, self.c(0.0)), x, y)
        y = b.select(b.fcmp_ordered("==", x, self.c(math.inf)), x, y)
        y = b.select(b.fcmp_ordered("==", x, self.c(-1.0)), self.c(-math.inf), y)
        return b.select(self.isnan(x), x, y)

    # ------------------------------------------------------------------ composites
    def tanh(self, x):
        """sign(x) * -e / (2 + e), e = expm1(-2|x|): no cancellation, no overflow."""
        b = self.b
        a = call_intrinsic(b, "fabs", x)
        e = self.expm1(b.fmul(a, self.c(-2.0)), may_be_big=False)
        t = b.fdiv(b.fneg(e), b.fadd(self.c(2.0), e))
        return call_intrinsic(b, "copysign", t, x)

    def sigmoid(self, x):
        """e = exp(-|x|); 1/(1+e) for x >= 0, e/(1+e) otherwise (never overflows)."""
        b = self.b
        e = self.exp(b.fneg(call_intrinsic(b, "fabs", x)))
        pos = b.fdiv(self.c(1.0), b.fadd(self.c(1.0), e))
        neg = b.fmul(e, pos)        # one division, not two: e/(1+e) to within 1 ulp
        return b.select(b.fcmp_unordered("<", x, self.c(0.0)), neg, pos)

    def softplus(self, x):
        """log(1 + e**x) = max(x, 0) + log1p(exp(-|x|)), as np.logaddexp(0, x)."""
        b = self.b
        e = self.exp(b.fneg(call_intrinsic(b, "fabs", x)))
        mx = b.select(b.fcmp_ordered(">", x, self.c(0.0)), x, self.c(0.0))
        return b.fadd(mx, self.log1p(e))
