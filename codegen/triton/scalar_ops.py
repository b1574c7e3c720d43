"""The scalar-op table of the Triton printer: one entry per op of the kernel body
language (passes/program.py), each a function of the operands' source text.

Ops with no direct `tl` equivalent (or none that Triton's interpreter runs: it has
no libdevice) are small @triton.jit helpers in HELPERS, written with `tl` math
only, so the same source runs on a GPU and in the interpreter; a generated module
contains only the helpers its kernels call. Where only libdevice is right on a GPU
(float fmod), INTERPRETER_HELPERS holds what the interpreter runs instead.
"""
from __future__ import annotations

import math

from nngraph.node import OPS
from nngraph.ops import random
from nngraph.semantics import reduce_identity
from nngraph.types import is_float

TL_DTYPE = {
    "float32": "tl.float32",
    "float64": "tl.float64",
    "int32": "tl.int32",
    "int64": "tl.int64",
    "bool": "tl.int1",
}


def literal(value, dtype: str) -> str:
    """A Python literal Triton reads with the right kind (weakly typed scalars)."""
    if dtype == "bool":
        return "True" if value else "False"
    if is_float(dtype):
        v = float(value)
        if math.isnan(v):
            return 'float("nan")'
        if math.isinf(v):
            return 'float("inf")' if v > 0 else '-float("inf")'
        return repr(v)
    return str(int(value))


def identity(kind: str, dtype: str) -> str:
    """The identity of a reduction (nngraph/semantics.py) as a literal."""
    v = reduce_identity(kind, dtype)
    return literal(v, dtype) if kind == "sum" or is_float(dtype) else str(int(v))


_NAN = "tl.PropagateNan.ALL"

# op -> (format taking the operand texts a, b, c, and the instr's dtype as t; helpers used)
UNARY = {
    "neg": ("-{a}", ()),
    "exp": ("tl.exp({a})", ()),
    "log": ("tl.log({a})", ()),
    "log1p": ("_log1p({a})", ("_log1p",)),
    "expm1": ("_expm1({a})", ("_expm1",)),
    "sqrt": ("tl.sqrt({a})", ()),
    "rsqrt": ("tl.rsqrt({a})", ()),
    "abs": ("tl.abs({a})", ()),
    "sign": ("tl.where({a} > 0, 1, tl.where({a} < 0, -1, 0)).to({t})", ()),
    "sin": ("tl.sin({a})", ()),
    "cos": ("tl.cos({a})", ()),
    "tanh": ("_tanh({a})", ("_tanh", "_expm1")),
    "sigmoid": ("_sigmoid({a})", ("_sigmoid",)),
    "relu": ("tl.maximum({a}, 0, propagate_nan=" + _NAN + ")", ()),
    "softplus": ("_softplus({a})", ("_softplus", "_log1p")),
    "step": ("tl.where({a} >= 0, 1, 0).to({t})", ()),
    "logical_not": ("({a} == 0)", ()),
    "stop_gradient": ("{a}", ()),
    "bitwise_not": ("~{a}", ()),
}

BINARY = {
    "add": ("{a} + {b}", ()),
    "sub": ("{a} - {b}", ()),
    "mul": ("{a} * {b}", ()),
    "div": ("{a} / {b}", ()),
    "pow": ("_pow({a}, {b})", ("_pow",)),
    "maximum": ("tl.maximum({a}, {b}, propagate_nan=" + _NAN + ")", ()),
    "minimum": ("tl.minimum({a}, {b}, propagate_nan=" + _NAN + ")", ()),
    "less": ("{a} < {b}", ()),
    "less_equal": ("{a} <= {b}", ()),
    "greater": ("{a} > {b}", ()),
    "greater_equal": ("{a} >= {b}", ()),
    "equal": ("{a} == {b}", ()),
    "not_equal": ("{a} != {b}", ()),
    "logical_and": ("{a} & {b}", ()),
    "logical_or": ("{a} | {b}", ()),
    "floordiv": ("_floordiv({a}, {b})", ("_floordiv",)),
    "mod": ("_mod({a}, {b})", ("_mod",)),
    # C's fmod on integers (srem, whose divisor the lowering keeps off 0 and -1); on
    # floats FLOAT_OPS's _fmod
    "fmod": ("{a} % {b}", ()),
    # C's integer division (sdiv: Triton's // truncates on ints, on a GPU and in the
    # interpreter; the lowering keeps the divisor off 0 and -1)
    "trunc_div": ("{a} // {b}", ()),
    "bitwise_and": ("{a} & {b}", ()),
    "bitwise_or": ("{a} | {b}", ()),
    "bitwise_xor": ("{a} ^ {b}", ()),
}

# op -> (format, helpers) where the operands are floats
FLOAT_OPS = {"fmod": ("_fmod({a}, {b})", ("_fmod",))}

# the op categories, read off the ops (nngraph.node.Op.category)
COMPARE = {name for name, op in OPS.items() if op.category == "compare"}
LOGICAL = {name for name, op in OPS.items() if op.category == "logical"} | {"logical_not"}   # bool operands

# Helper functions (@triton.jit), portable: they run on a GPU and in the interpreter.
HELPERS = {
    "_log1p": '''\
@triton.jit
def _log1p(x):
    # log(1 + x), exact near 0 (Goldberg): log(u) * x / (u - 1) with u = 1 + x
    u = 1.0 + x
    d = u - 1.0
    r = tl.log(u) * (x / tl.where(d == 0, 1.0, d))
    return tl.where(d == 0, x, tl.where(u == float("inf"), u, r))
''',
    "_expm1": '''\
@triton.jit
def _expm1(x):
    # exp(x) - 1, exact near 0 (Kahan): (u - 1) * x / log(u) with u = exp(x)
    u = tl.exp(x)
    d = u - 1.0
    lu = tl.log(u)
    r = d * (x / tl.where(lu == 0, 1.0, lu))
    r = tl.where(u == 1.0, x, tl.where(d == -1.0, -1.0, r))
    return tl.where(u == float("inf"), u, r)
''',
    "_tanh": '''\
@triton.jit
def _tanh(x):
    # tanh(|x|) = -expm1(-2|x|) / (2 + expm1(-2|x|)): no overflow, exact near 0
    e = _expm1(-2.0 * tl.abs(x))
    t = -e / (2.0 + e)
    return tl.where(x < 0, -t, t)
''',
    "_sigmoid": '''\
@triton.jit
def _sigmoid(x):
    # stable for either sign: exp never overflows; exp in float64, as GPUs' fast float32
    # exp loses |x| * 2**-24 relative accuracy in the tail
    e = tl.exp(-tl.abs(x).to(tl.float64))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).to(x.dtype)
''',
    "_softplus": '''\
@triton.jit
def _softplus(x):
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), stable for any magnitude; the tail
    # in float64, as GPUs' fast float32 exp loses |x| * 2**-24 relative accuracy there
    return tl.maximum(x, 0.0) + _log1p(tl.exp(-tl.abs(x).to(tl.float64))).to(x.dtype)
''',
    "_pow": '''\
@triton.jit
def _pow(a, b):
    # a ** b with NumPy's special cases: a negative base needs an integer exponent
    r = tl.exp2(b * tl.log2(tl.abs(a)))
    b_int = tl.floor(b) == b
    b_odd = tl.where(b_int, tl.floor(b * 0.5) * 2.0 != b, False)
    r = tl.where(a < 0, tl.where(b_odd, -r, tl.where(b_int, r, float("nan"))), r)
    return tl.where(b == 0, 1.0, tl.where(a == 1.0, 1.0, r))
''',
    "_floordiv": '''\
@triton.jit
def _floordiv(a, b):
    # floor division by a positive divisor; right whether // truncates (GPU) or floors
    q = a // b
    return tl.where(a - q * b < 0, q - 1, q)
''',
    "_fmod": '''\
@triton.jit
def _fmod(a, b):
    # C's fmod, exact: libdevice's on a GPU. `%` on floats is LLVM's frem, which NVPTX
    # expands as a - trunc(a / b) * b: wrong once the quotient passes the mantissa
    # (2**24 in float32), and +0.0 where C gives -0.0 (a negative a, a zero remainder)
    return libdevice.fmod(a, b)
''',
    "_mod": '''\
@triton.jit
def _mod(a, b):
    # remainder of the floor division by a positive divisor (in [0, b))
    r = a % b
    return tl.where(r < 0, r + b, r)
''',
}
HELPERS["_hash32"] = """\
@triton.jit
def _hash32(x):
    # the 'lowbias32' mix of nngraph/ops/random.py (uint32 wrap-around)
""" + "".join(f"    x ^= x >> {shift}\n" + (f"    x *= 0x{mul:08X}\n" if mul is not None else "")
              for shift, mul in random.HASH_STEPS) + "    return x\n"


def uniform_expr(seed: int, counter: str, index: str) -> str:
    """The counter-based uniform [0, 1) of nngraph/ops/random.py, bit for bit:
    key = hash32(seed * SEED_MUL + counter * COUNTER_MUL); u = (hash32(index ^ key) >> 8) * 2**-24.
    The seed's product is folded here (it is a constant of the kernel)."""
    seed_mix = (int(seed) & 0xFFFFFFFF) * random.SEED_MUL & 0xFFFFFFFF
    key = f"_hash32({counter}.to(tl.uint32) * 0x{random.COUNTER_MUL:08X} + {seed_mix:#010x})"
    return (f"(_hash32({index}.to(tl.uint32) ^ {key}) >> {random.MANTISSA_SHIFT}).to(tl.float32)"
            f" * {random.UNIT!r}")


# Helpers whose GPU version Triton's interpreter cannot run (it has no libdevice: its
# extern_elementwise raises), as the interpreter runs them instead: same values
INTERPRETER_HELPERS = {
    "_fmod": '''\
def _fmod(a, b):
    # the interpreter's frem is np.fmod: C's fmod, exact
    return a % b
''',
}


def helper_source(names) -> str:
    """The source of the helpers named, in a stable order."""
    return "\n\n".join(HELPERS[n] for n in sorted(names))


def interpreter_helper_source(names) -> str:
    """The interpreter's own versions (INTERPRETER_HELPERS) of the helpers named, or ""."""
    return "\n\n".join(INTERPRETER_HELPERS[n] for n in sorted(names) if n in INTERPRETER_HELPERS)
