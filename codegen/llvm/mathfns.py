"""Vectorisable transcendental functions written in IR (no libm calls, so LLVM's
loop vectoriser can widen them): exp, expm1, log, log1p, tanh for f32 and f64.

Each is range reduction plus a polynomial, accurate to a couple of ulp, with the
special values (NaN, +-inf, 0, subnormals) fixed up by selects. The same algorithm
serves both widths; only the constants and polynomial degrees differ (f32: minimax
polynomials, f64: Taylor's). They are written for throughput, since a fused
elementwise loop is bound by its instructions, not by memory: one clamp where the
sign of the argument is known, tanh's reduction done on |x| without forming -2|x|,
and with AVX-512 the divisions of tanh and sigmoid as a reciprocal estimate and one
Newton step (recip_div).
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


def _taylor(degree):
    """1/2!, 1/3!, ... 1/degree!: the coefficients of r**2, r**3, ... of exp(r)."""
    return [1.0 / math.factorial(k) for k in range(2, degree + 1)]


# Minimax coefficients of r**2, r**3, ... (f32 values, written in hex so they are exact)
# for |r| <= ln2/2, each fitted by linear programming (scipy.optimize.linprog) on 6000
# points for the least maximum relative error against mpmath's exp, with the leading
# terms fixed (1 + r for exp, r for expm1), and checked again after rounding to f32. exp: degree 6, relative error 1.7e-8 (0.3 ulp;
# Taylor needs degree 7 for that); expm1: degree 6, 1.7e-8. One Horner step each fewer
# than Taylor's for the same accuracy.
EXP_F32 = [float.fromhex(h) for h in ("0x1.fffffcp-2", "0x1.55541ap-3", "0x1.555822p-5", "0x1.126792p-7",
                                     "0x1.6ae72p-10")]
EXPM1_F32 = [float.fromhex(h) for h in ("0x1.fffffep-2", "0x1.5554bp-3", "0x1.555674p-5", "0x1.122776p-7",
                                       "0x1.6bec06p-10")]


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
        # -expm1(-2a) (and so tanh(a)) rounds to 1 beyond: 2 exp(-2a) < 2**-(mant + 2)
        self.tanh_big = 10.0 if single else 20.0
        # sigmoid(x) rounds to 1 beyond: exp(-x) < 2**-(mant + 2)
        self.sigmoid_big = 20.0 if single else 40.0
        # exp(r) = 1 + r + r**2 (c2 + c3 r + ...) and expm1(r) = r + r**2 (c2 + c3 r + ...) on
        # |r| <= ln2/2: f32 uses minimax coefficients (EXP_F32, EXPM1_F32), f64 Taylor's
        # up to r**13/13! (the omitted term < 0.1 ulp)
        self.exp_coefs = EXP_F32 if single else _taylor(13)
        self.expm1_coefs = EXPM1_F32 if single else _taylor(13)
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
    def clamp(self, x, lo, hi=None):
        """x limited to [lo, hi] (hi=None: no upper bound), a NaN left NaN: ordered
        compares and selects, which x86 does in one max and one min instruction
        (minnum/maxnum turn NaN into a bound and cost fix-ups)."""
        b = self.b
        x = b.select(b.fcmp_ordered("<", x, self.c(lo)), self.c(lo), x)
        if hi is None:
            return x
        return b.select(b.fcmp_ordered(">", x, self.c(hi)), self.c(hi), x)

    def _reduce(self, x, nonpositive=False):
        """x = n ln2 + r, |r| <= ln2/2; returns (n as an integer, r).
        n is rounded by adding 1.5 * 2**mant (the sum's low mantissa bits then hold n,
        ties to even) rather than rint and a float-to-int conversion: the same count of
        instructions, and a NaN x gives some integer n (bits, defined) with NaN r,
        so NaN propagates to exp and expm1 without a final select. `nonpositive`: the
        caller knows x <= 0 (or NaN), so only the lower clamp is needed."""
        xc = self.clamp(x, self.s.exp_lo, None if nonpositive else self.s.exp_hi)
        n, nf = self._round_log2e(xc, 1.0)
        return n, self._minus_n_ln2(xc, nf, 1.0)

    def _round_log2e(self, x, scale):
        """n = round(scale * x / ln2) as an integer and as a float. The float is
        converted from the integer rather than taken as t - shifter: with AVX-512 the
        scaling by 2**n (vscalef) wants n as a float anyway, so LLVM converts once."""
        b, s = self.b, self.s
        t, _ = self._shifted_log2e(x, scale)      # (its t - S is unused: LLVM drops it)
        n = b.sub(b.bitcast(t, s.ity), self.ic(self._bits(1.5 * 2.0 ** s.mant)))
        return n, b.sitofp(n, self.t)

    def _minus_n_ln2(self, x, nf, half):
        """x - half * n ln2 in two steps (n * ln2_hi is exact), each one FMA; `half`
        is 1 or -1/2 (then the result is -r/2 of the reduction of -2x, exactly)."""
        b, s = self.b, self.s
        r = b.fsub(x, b.fmul(nf, self.c(half * s.ln2_hi), flags=CONTRACT), flags=CONTRACT)
        return b.fsub(r, b.fmul(nf, self.c(half * s.ln2_lo), flags=CONTRACT), flags=CONTRACT)

    def _exp_poly(self, r):
        """exp(r) for |r| <= ln2/2: 1 + r (1 + r (c2 + c3 r + ...)), Horner to the end
        (one FMA per coefficient)."""
        b = self.b
        q = self.poly(r, self.s.exp_coefs)
        q = b.fadd(b.fmul(q, r, flags=CONTRACT), self.c(1.0), flags=CONTRACT)
        return b.fadd(b.fmul(q, r, flags=CONTRACT), self.c(1.0), flags=CONTRACT)

    def _expm1_poly(self, r):
        """expm1(r) for |r| <= ln2/2: r + r**2 (c2 + c3 r + ...), exact as r -> 0."""
        b = self.b
        q = self.poly(r, self.s.expm1_coefs)
        return b.fadd(b.fmul(b.fmul(r, r), q, flags=CONTRACT), r, flags=CONTRACT)

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

    def exp(self, x, nonpositive=False):
        """`nonpositive`: the caller knows x <= 0 (or NaN): one clamp instead of two,
        and without AVX-512 the cheaper scaling of _exp_nonpositive."""
        if nonpositive and not has_feature("avx512f"):
            return self._exp_nonpositive(x)
        n, r = self._reduce(x, nonpositive)
        return self._scale(n, self._exp_poly(r))     # NaN in, NaN out (_reduce)

    def _exp_nonpositive(self, x):
        """exp(x) for x <= 0 (or NaN) without vscalef: p * 2**(n + k) is exact (a
        normal number times a normal power of two, made by one shift), and the
        multiply by 2**-k rounds once, also where the result is subnormal: a shift
        and two multiplies instead of the two powers of _scale (about six integer
        instructions)."""
        b, s = self.b, self.s
        k = 64                    # n + k stays in the normal range for n >= exp_lo / ln2
        xc = self.clamp(x, s.exp_lo)
        t, nf = self._shifted_log2e(xc, 1.0, s.bias + k)
        p = self._exp_poly(self._minus_n_ln2(xc, nf, 1.0))
        return b.fmul(b.fmul(p, self._pow2_shifted(t)), self.c(2.0 ** -k))

    def expm1(self, x, may_be_big=True):
        """2**n p + (2**n - 1), exact near 0; exp(x) itself where x is large (both
        from one range reduction). may_be_big=False: the caller knows x <= 0."""
        b, s = self.b, self.s
        n, r = self._reduce(x, nonpositive=not may_be_big)
        p = self._expm1_poly(r)
        # 2**n, which is 0 or inf at the ends of n's range: y is then -1, or NaN
        # where x > expm1_big, which `big` replaces
        t = self._pow2(n, may_be_big)
        y = b.fadd(b.fmul(t, p, flags=CONTRACT), b.fsub(t, self.c(1.0)), flags=CONTRACT)
        if may_be_big:
            big = self._scale(n, b.fadd(p, self.c(1.0)))
            y = b.select(b.fcmp_ordered(">", x, self.c(s.expm1_big)), big, y)
        # expm1 has x's sign; the sum above makes +0 of x = -0 (r + r**2 q is -0 + +0)
        return call_intrinsic(b, "copysign", y, x)              # NaN in, NaN out (_reduce)

    def _pow2(self, n, may_be_big=True):
        """2**n: one vscalef of 1 with AVX-512, else built from n limited to the normal
        range (2**-126 stands for the smaller powers, which callers add to 1 or -1)."""
        b, s = self.b, self.s
        if has_feature("avx512f"):
            return self._ldexp(self.c(1.0), n)
        lo = self.ic(-s.bias + 1)
        n = b.select(b.icmp_signed("<", n, lo), lo, n)
        if may_be_big:
            hi = self.ic(s.bias)
            n = b.select(b.icmp_signed(">", n, hi), hi, n)
        return self.pow2i(n)

    def _shifted_log2e(self, x, scale, bias=0.0):
        """t = scale * x / ln2 + S rounded to an integer, S = 1.5 * 2**mant + bias, and
        n = t - S (exact) as a float. t's low mantissa bits then hold n + bias, so
        t's bits shifted left by mant are 2**n's bits where bias is the exponent bias
        plus k (then they are 2**(n + k)), for n + bias in [1, 2 * bias]: one shift
        instead of an integer add, a conversion and a scaling (_pow2_shifted)."""
        b, s = self.b, self.s
        shifter = 1.5 * 2.0 ** s.mant + bias
        t = b.fadd(b.fmul(x, self.c(scale / math.log(2)), flags=CONTRACT), self.c(shifter), flags=CONTRACT)
        return t, b.fsub(t, self.c(shifter))

    def _pow2_shifted(self, t):
        """2**(n + k) from _shifted_log2e's t (bias = exponent bias + k)."""
        b, s = self.b, self.s
        return b.bitcast(b.shl(b.bitcast(t, s.ity), self.ic(s.mant)), self.t)

    def _minus_expm1_minus_2a(self, a, signed=False):
        """-expm1(-2a) for a >= 0 (or NaN), in [0, 1), or for any a where `signed`
        (then negative for a < 0, down to 1 - exp(2 tanh_big)): the range reduction
        of -2a done on a itself (r' = -r/2, exact), so -2a is never formed, and the
        polynomial written for r' (coefficients scaled by powers of two, exact):
        -expm1(r) = r' (2 + r' Q(r')), Q(r') = -4 q(-2 r') (two instructions after Q,
        one fewer than 2 r' + r'**2 Q; 2.6 instead of 2.5 ulp in tanh). Then with
        T = 2**n, -expm1(-2a) = T (-expm1(r)) - (T - 1). |a| is limited to tanh_big,
        beyond which tanh rounds to +-1, so |n| <= tanh_big * 2/ln2 and T is a
        normal number, made by one shift (_shifted_log2e) on either ISA. -n is taken
        as S - t and the last step subtracts T - 1, so that a = -0 gives -0."""
        b, s = self.b, self.s
        ac = self.clamp(a, -s.tanh_big, s.tanh_big) if signed else \
            b.select(b.fcmp_ordered(">", a, self.c(s.tanh_big)), self.c(s.tanh_big), a)
        t, _ = self._shifted_log2e(ac, -2.0, s.bias)     # (its t - S is unused: LLVM drops it)
        rh = self._plus_n_half_ln2(ac, b.fsub(self.c(1.5 * 2.0 ** s.mant + s.bias), t))
        q = self.poly(rh, [-4.0 * (-2.0) ** j * c for j, c in enumerate(s.expm1_coefs)])
        p = b.fmul(rh, b.fadd(b.fmul(rh, q, flags=CONTRACT), self.c(2.0), flags=CONTRACT))
        t = self._pow2_shifted(t)
        return b.fsub(b.fmul(t, p, flags=CONTRACT), b.fsub(t, self.c(1.0)), flags=CONTRACT)

    def _plus_n_half_ln2(self, a, minus_n):
        """a + n ln2/2 (= -r/2 of the reduction -2a = n ln2 + r) in one FMA with ln2/2
        rounded to this type, where _minus_n_ln2 needs two (ln2 split in a high part
        whose products are exact and a low part). Enough here, where |n| <= 29 (f32)
        and tanh's quotient damps the error: the constant is off by d (9.5e-10 for
        f32), so r is off by 2|n| d and m = 1 - 2**n exp(r) by 2**n exp(r) 2|n| d.
        For n <= -1 that is <= 1.42 d (|n| 2**n <= 1/2) while m >= 0.29: at most
        4.9 d relative, 0.08 ulp (f32). For n >= 1 it is 2|n| d relative to m
        (|m| >= 0.41), and tanh = m/(2 - m) passes on that times 2/(2 - m) <= 0.83:
        at most 0.1 ulp at n = 1, less beyond. n = 0 leaves a exact. minus_n is -n as
        a float, +0 for n = 0, so that a = -0 stays -0."""
        b = self.b
        return b.fsub(a, b.fmul(minus_n, self.c(0.5 * math.log(2)), flags=CONTRACT), flags=CONTRACT)

    def _divides_by_estimate(self):
        """Whether recip_div divides by a reciprocal estimate and a Newton step (f32
        with AVX-512) rather than by a true division."""
        return self.t == F32 and has_feature("avx512f")

    def recip_div(self, num, den):
        """num / den where the caller knows neither is infinite (NaN may be). With
        AVX-512, f32 vectors: the `arcp ninf contract` flags let LLVM compute it as a
        reciprocal estimate and one Newton step with the numerator folded in: four
        cheap instructions instead of a division whose unit takes about 10 cycles per
        vector. In the 16-lane loop the estimate is vrcp14ps (14 bits: within 1 ulp,
        exactly 1 where num == den); in the shorter vector loop LLVM adds for a
        remainder it is vrcpps (12 bits: within 2 ulp, 1 - 2**-24 where num == den),
        which keeps tanh and sigmoid inside their 4-ulp budget. A second step for
        the remainder's sake would cost the main loop 2-3 instructions per division,
        and LLVM offers no estimate per vector width. Without AVX-512 the main loop
        would get vrcpps too, so it stays a true division (no dearer there than the
        two steps it would need). f64 always divides (x86 has no f64 estimate)."""
        fast = self._divides_by_estimate()
        return self.b.fdiv(num, den, flags=("arcp", "ninf", "contract") if fast else ())

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
        """m / (2 - m), m = -expm1(-2x): no cancellation (the signs of m and x agree,
        and 2 - m >= 1), no overflow (|x| is limited where tanh rounds to +-1). With a
        true division it is done on x itself: a = -0 gives m = -0 and -0 / 2 = -0. The
        estimate's Newton step (recip_div) turns a -0 quotient into +0, so there it is
        done on |x| and x's sign put back: one instruction (vpternlogd), where the
        signed form saves three on AVX2 (fabs, and copysign's and/andnot/or)."""
        b = self.b
        if not self._divides_by_estimate():
            m = self._minus_expm1_minus_2a(x, signed=True)
            return b.fdiv(m, b.fsub(self.c(2.0), m))
        m = self._minus_expm1_minus_2a(call_intrinsic(b, "fabs", x))
        t = self.recip_div(m, b.fsub(self.c(2.0), m))
        return call_intrinsic(b, "copysign", t, x)

    def sigmoid(self, x):
        """1 / (1 + exp(-x)), never overflowing, by the form that is cheapest where
        the code runs: _sigmoid_scaled with AVX-512's vscalef, else one division."""
        if has_feature("avx512f"):
            return self._sigmoid_scaled(x)
        b = self.b
        e = self.exp(b.fneg(call_intrinsic(b, "fabs", x)), nonpositive=True)    # in [0, 1]
        num = b.select(b.fcmp_unordered("<", x, self.c(0.0)), e, self.c(1.0))   # NaN: e, NaN
        return b.fdiv(num, b.fadd(self.c(1.0), e))        # e/(1+e) for x < 0, 1/(1+e) else

    def _sigmoid_scaled(self, x):
        """With x = m ln2 - r (|r| <= ln2/2), 1/(1 + exp(-x)) = 2**m / (2**m + exp(r)):
        both powers are vscalef of the m the reduction converts once, and no select
        between the two signs' formulas. x is limited to [exp_lo, sigmoid_big]
        (beyond, the result rounds to 0 or 1), so m is in [-150, 29] (f32); where
        2**m is below exp(r)'s last bit it adds nothing, and the final scaling
        rounds once, also into the subnormals."""
        b, s = self.b, self.s
        xc = self.clamp(x, s.exp_lo, s.sigmoid_big)
        m, mf = self._round_log2e(xc, 1.0)
        r = b.fsub(b.fmul(mf, self.c(s.ln2_hi), flags=CONTRACT), xc, flags=CONTRACT)   # exact
        r = b.fadd(b.fmul(mf, self.c(s.ln2_lo), flags=CONTRACT), r, flags=CONTRACT)
        den = b.fadd(self._ldexp(self.c(1.0), m), self._exp_poly(r))
        return self._ldexp(self.recip_div(self.c(1.0), den), m)     # NaN in, NaN out (r)

    def softplus(self, x):
        """log(1 + e**x) = max(x, 0) + log1p(exp(-|x|)), as np.logaddexp(0, x)."""
        b = self.b
        e = self.exp(b.fneg(call_intrinsic(b, "fabs", x)), nonpositive=True)
        mx = b.select(b.fcmp_ordered(">", x, self.c(0.0)), x, self.c(0.0))
        return b.fadd(mx, self.log1p(e))
