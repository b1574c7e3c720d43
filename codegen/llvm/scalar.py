"""The scalar-op table: each elementwise op of the kernel body language
(passes/program.py) as LLVM instructions, for f32/f64/i32/i64/bool.

Semantics follow the NumPy reference of each op (nngraph/ops/elementwise.py):
operands of arithmetic ops are first converted to the result dtype, maximum and
minimum propagate NaN as np.maximum does, integer arithmetic wraps, floordiv/mod
use floor semantics. exp/log/tanh/... come from mathfns (vectorisable polynomials).
"""
from __future__ import annotations

import llvmlite.ir as ir
import numpy as np

from nngraph.node import OPS
from nngraph.semantics import reduce_identity
from nngraph.types import is_float

from .irtypes import F32, F64, I1, call_intrinsic, const, is_float_type, value_type
from .mathfns import FloatMath


def convert(b: ir.IRBuilder, v, src: str, dst: str):
    """A value of dtype `src` as dtype `dst`, as NumPy's astype does (float to int
    saturates instead of being undefined; float to bool is x != 0, NaN included)."""
    if src == dst:
        return v
    st, dt = value_type(src), value_type(dst)
    if dst == "bool":
        if is_float_type(st):
            return b.fcmp_unordered("!=", v, ir.Constant(st, 0.0))
        return b.icmp_signed("!=", v, ir.Constant(st, 0))
    if src == "bool":
        return b.uitofp(v, dt) if is_float_type(dt) else b.zext(v, dt)
    if is_float_type(st) and is_float_type(dt):
        return b.fpext(v, dt) if dt == F64 else b.fptrunc(v, dt)
    if is_float_type(st):
        fn = b.module.globals.get(f"llvm.fptosi.sat.i{dt.width}.{'f32' if st == F32 else 'f64'}")
        if fn is None:
            fn = ir.Function(b.module, ir.FunctionType(dt, [st]),
                             f"llvm.fptosi.sat.i{dt.width}.{'f32' if st == F32 else 'f64'}")
        return b.call(fn, [v])
    if is_float_type(dt):
        return b.sitofp(v, dt)
    return b.sext(v, dt) if dt.width > st.width else b.trunc(v, dt)


def _promote(*dtypes):
    return np.result_type(*[np.dtype(d if d != "bool" else np.bool_) for d in dtypes]).name


def emit(b: ir.IRBuilder, op: str, args: list, arg_dtypes: list, dtype: str, attrs=None):
    """The value of scalar op `op` (result dtype `dtype`) applied to `args`."""
    attrs = attrs or {}
    fn = _UNARY.get(op) if len(args) == 1 else None
    if op == "exp" and attrs.get("nonpositive"):     # the argument is <= 0 or NaN (passes/exp_sign.py)
        fn = _EXP_NONPOSITIVE
    if fn is not None:
        src = arg_dtypes[0]
        x = args[0]
        if op not in _KEEP_ARG_DTYPE:
            x, src = convert(b, x, src, dtype), dtype
        return fn(b, x, src)
    if op == "cast":
        return convert(b, args[0], arg_dtypes[0], dtype)
    if op == "where":
        c = convert(b, args[0], arg_dtypes[0], "bool")
        return b.select(c, convert(b, args[1], arg_dtypes[1], dtype), convert(b, args[2], arg_dtypes[2], dtype))
    if op in _COMPARE:
        common = _promote(*arg_dtypes)
        x, y = (convert(b, a, d, common) for a, d in zip(args, arg_dtypes))
        sym = _COMPARE[op]
        if is_float(common):
            return b.fcmp_unordered(sym, x, y) if op == "not_equal" else b.fcmp_ordered(sym, x, y)
        if common == "bool":
            return b.icmp_unsigned(sym, x, y)
        return b.icmp_signed(sym, x, y)
    if op in OPS and OPS[op].category == "logical":
        x, y = (convert(b, a, d, "bool") for a, d in zip(args, arg_dtypes))
        return b.and_(x, y) if op == "logical_and" else b.or_(x, y)
    if op in _BINARY:
        x, y = (convert(b, a, d, dtype) for a, d in zip(args, arg_dtypes))
        return _BINARY[op](b, x, y, dtype)
    raise NotImplementedError(f"codegen/llvm: no scalar op {op!r} for {dtype} "
                              f"(operands {', '.join(arg_dtypes)})")


_COMPARE = {"less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">=",
            "equal": "==", "not_equal": "!="}


def _zero(x):
    return ir.Constant(x.type, 0.0 if is_float_type(x.type) else 0)


def _one(x):
    return ir.Constant(x.type, 1.0 if is_float_type(x.type) else 1)


# ----------------------------------------------------------------------------- binary

def _product_plus_constant(b, product, c, negate=False):
    """(-)product + c as one llvm.fmuladd (an FMA where the CPU has one) when
    `product` is a float multiply and `c` a constant, else None. One rounding instead
    of two, never less accurate, and without the hazard that keeps contraction off
    elsewhere: a constant cannot cancel against a rounded copy of the same product
    (a*a - b*b with a == b going negative), so 1 - t*t stays >= 0 for |t| <= 1."""
    if not (isinstance(c, ir.Constant) and isinstance(product, ir.Instruction) and product.opname == "fmul"):
        return None
    a, m = product.operands
    return call_intrinsic(b, "fmuladd", b.fneg(a) if negate else a, m, c)


def _add(b, x, y, dt):
    if is_float(dt):
        return _product_plus_constant(b, x, y) or _product_plus_constant(b, y, x) or b.fadd(x, y)
    return b.or_(x, y) if dt == "bool" else b.add(x, y)


def _sub(b, x, y, dt):
    if is_float(dt):
        minus_c = ir.Constant(y.type, -y.constant) if isinstance(y, ir.Constant) else None
        return (_product_plus_constant(b, x, minus_c) or _product_plus_constant(b, y, x, negate=True)
                or b.fsub(x, y))
    return b.sub(x, y)


def _mul(b, x, y, dt):
    return b.fmul(x, y) if is_float(dt) else (b.and_(x, y) if dt == "bool" else b.mul(x, y))


def _div(b, x, y, dt):
    if not is_float(dt):
        raise NotImplementedError(f"div with result {dt}")
    return b.fdiv(x, y)


def _pow(b, x, y, dt):
    if not is_float(dt):
        raise NotImplementedError(f"pow with result {dt}")
    return call_intrinsic(b, "pow", x, y)


def _maximum(b, x, y, dt):
    if is_float(dt):   # np.maximum: (x >= y or isnan(x)) ? x : y
        pick = b.or_(b.fcmp_ordered(">=", x, y), b.fcmp_unordered("uno", x, x))
        return b.select(pick, x, y)
    if dt == "bool":
        return b.or_(x, y)
    return b.select(b.icmp_signed(">=", x, y), x, y)


def _minimum(b, x, y, dt):
    if is_float(dt):
        pick = b.or_(b.fcmp_ordered("<=", x, y), b.fcmp_unordered("uno", x, x))
        return b.select(pick, x, y)
    if dt == "bool":
        return b.and_(x, y)
    return b.select(b.icmp_signed("<=", x, y), x, y)


def _floordiv(b, x, y, dt):
    if is_float(dt):
        return call_intrinsic(b, "floor", b.fdiv(x, y))
    q = b.sdiv(x, y)
    r = b.srem(x, y)
    fix = b.and_(b.icmp_signed("!=", r, _zero(r)), b.icmp_signed("!=", b.icmp_signed("<", r, _zero(r)),
                                                                 b.icmp_signed("<", y, _zero(y))))
    return b.sub(q, b.zext(fix, q.type))


def _mod(b, x, y, dt):
    if is_float(dt):
        return b.fsub(x, b.fmul(call_intrinsic(b, "floor", b.fdiv(x, y)), y))
    r = b.srem(x, y)
    fix = b.and_(b.icmp_signed("!=", r, _zero(r)), b.icmp_signed("!=", b.icmp_signed("<", r, _zero(r)),
                                                                 b.icmp_signed("<", y, _zero(y))))
    return b.select(fix, b.add(r, y), r)


def _fmod(b, x, y, dt):
    """C's fmod (frem); on integers srem, whose divisor the lowering keeps off 0 and -1
    (nngraph/semantics.py)."""
    return b.frem(x, y) if is_float(dt) else b.srem(x, y)


def _int_only(name, f):
    def g(b, x, y, dt):
        if is_float(dt) or dt == "bool":
            raise NotImplementedError(f"{name} needs integer operands, got {dt}")
        return f(b, x, y)
    return g


_BINARY = {"add": _add, "sub": _sub, "mul": _mul, "div": _div, "pow": _pow, "maximum": _maximum,
           "minimum": _minimum, "floordiv": _floordiv, "mod": _mod,
           "fmod": _fmod, # C's integer division (sdiv); the lowering keeps the divisor off 0 and -1 (nngraph/semantics.py)
           "trunc_div": _int_only("trunc_div", lambda b, x, y: b.sdiv(x, y)),
           "bitwise_and": _int_only("bitwise_and", lambda b, x, y: b.and_(x, y)),
           "bitwise_or": _int_only("bitwise_or", lambda b, x, y: b.or_(x, y)),
           "bitwise_xor": _int_only("bitwise_xor", lambda b, x, y: b.xor(x, y))}

# ----------------------------------------------------------------------------- unary


def _fm(b, x):
    return FloatMath(b, x.type)


def _float_only(name, f):
    def g(b, x, dt):
        if not is_float(dt):
            raise NotImplementedError(f"{name} needs a float operand, got {dt}")
        return f(b, x)
    return g


def _neg(b, x, dt):
    return b.fneg(x) if is_float(dt) else b.sub(_zero(x), x)


def _abs(b, x, dt):
    if is_float(dt):
        return call_intrinsic(b, "fabs", x)
    if dt == "bool":
        return x
    return b.select(b.icmp_signed("<", x, _zero(x)), b.sub(_zero(x), x), x)


def _sign(b, x, dt):
    if dt == "bool":
        return x
    if is_float(dt):
        one = _one(x)
        y = b.select(b.fcmp_ordered(">", x, _zero(x)), one, b.select(b.fcmp_ordered("<", x, _zero(x)), b.fneg(one), x))
        return y
    return b.sub(b.zext(b.icmp_signed(">", x, _zero(x)), x.type), b.zext(b.icmp_signed("<", x, _zero(x)), x.type))


def _relu(b, x, dt):
    if is_float(dt):      # np.maximum(x, 0): NaN stays NaN
        return b.select(b.fcmp_ordered("<", x, _zero(x)), _zero(x), x)
    if dt == "bool":
        return x
    return b.select(b.icmp_signed("<", x, _zero(x)), _zero(x), x)


def _step(b, x, dt):
    if dt == "bool":
        return ir.Constant(I1, 1)
    ge = b.fcmp_ordered(">=", x, _zero(x)) if is_float(dt) else b.icmp_signed(">=", x, _zero(x))
    return b.uitofp(ge, x.type) if is_float(dt) else b.zext(ge, x.type)


def _logical_not(b, x, dt):
    c = convert(b, x, dt, "bool")
    return b.xor(c, ir.Constant(I1, 1))


def _ident(b, x, dt):
    return x


_UNARY = {
    "neg": _neg, "abs": _abs, "sign": _sign, "relu": _relu, "step": _step,
    "logical_not": _logical_not, "stop_gradient": _ident,
    "bitwise_not": lambda b, x, dt: b.not_(x),
    "exp": _float_only("exp", lambda b, x: _fm(b, x).exp(x)),
    "expm1": _float_only("expm1", lambda b, x: _fm(b, x).expm1(x)),
    "log": _float_only("log", lambda b, x: _fm(b, x).log(x)),
    "log1p": _float_only("log1p", lambda b, x: _fm(b, x).log1p(x)),
    "tanh": _float_only("tanh", lambda b, x: _fm(b, x).tanh(x)),
    "sigmoid": _float_only("sigmoid", lambda b, x: _fm(b, x).sigmoid(x)),
    "softplus": _float_only("softplus", lambda b, x: _fm(b, x).softplus(x)),
    "sqrt": _float_only("sqrt", lambda b, x: call_intrinsic(b, "sqrt", x)),
    "rsqrt": _float_only("rsqrt", lambda b, x: b.fdiv(_one(x), call_intrinsic(b, "sqrt", x))),
    "sin": _float_only("sin", lambda b, x: call_intrinsic(b, "sin", x)),
    "cos": _float_only("cos", lambda b, x: call_intrinsic(b, "cos", x)),
}
_EXP_NONPOSITIVE = _float_only("exp", lambda b, x: _fm(b, x).exp(x, nonpositive=True))
# ops whose operand keeps its own dtype (the result dtype differs by design)
_KEEP_ARG_DTYPE = {"logical_not"}

def identity(kind: str, dtype: str):
    """The identity of a reduction (nngraph/semantics.py) as an LLVM constant."""
    return const(dtype, reduce_identity(kind, dtype))
