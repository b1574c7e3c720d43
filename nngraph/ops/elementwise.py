"""Elementwise ops: one scalar function applied at every point, NumPy broadcasting.

The op name doubles as the scalar op in the kernel body language (passes/program.py),
so each backend maps these names to instructions in one table.
"""
from __future__ import annotations

import numpy as np

from .. import semantics
from ..node import ConstValue, Op, Tensor, make, register, shape_error
from ..sizes import join
from ..types import TensorType, as_dtype, is_float, np_dtype, promote

# ----------------------------------------------------------------------------- helpers


def constant(value, dtype=None, where=None) -> Tensor:
    """A literal tensor. Python scalars become 0-d arrays (float32 for floats)."""
    if isinstance(value, Tensor):
        return value if dtype is None else cast(value, dtype)
    arr = np.asarray(value)
    if dtype is not None:
        arr = arr.astype(np_dtype(as_dtype(dtype)))
    elif arr.dtype == np.float64 and not isinstance(value, np.ndarray):
        arr = arr.astype(np.float32)  # Python floats default to float32, as in PyTorch and JAX
    elif arr.dtype.kind in "iu" and not isinstance(value, np.ndarray):
        arr = arr.astype(np.int64 if arr.dtype.itemsize == 8 and (arr.max(initial=0) > 2**31 - 1 or arr.min(initial=0) < -2**31) else np.int32)
    arr = arr.astype(np_dtype(as_dtype(arr.dtype)))
    return make("constant", (), value=ConstValue(arr), where=where)


def _const_infer(inputs, attrs):
    a = attrs["value"].array
    return TensorType(as_dtype(a.dtype), a.shape)


register(Op("constant", "source", _const_infer, lambda ctx: ctx.attrs["value"].array.copy(),
            doc="a literal array"))


def _source_infer(inputs, attrs):
    return TensorType(attrs["dtype"], attrs["shape"])


register(Op("placeholder", "source", _source_infer, None, doc="a graph input"))
register(Op("parameter", "source", None, None, doc="state kept across calls"))


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Tensors pass through; Python scalars take the dtype of `like` (weak typing);
    arrays keep their own dtype."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (bool, int, float, np.integer, np.floating)) and like is not None and not isinstance(x, np.ndarray):
        if isinstance(x, (bool, np.bool_)):
            dt = like.dtype if like.dtype != "bool" else "bool"
        elif is_float(like.dtype):
            dt = like.dtype
        elif isinstance(x, (float, np.floating)):
            dt = "float32"
        else:
            dt = like.dtype if like.dtype != "bool" else "int32"
        return constant(np.asarray(x, dtype=np_dtype(dt)))
    return constant(x)


def _coerce(*xs) -> list[Tensor]:
    like = next((x for x in xs if isinstance(x, Tensor)), None)
    return [as_tensor(x, like) for x in xs]


def broadcast_shapes(op: str, *nodes) -> tuple:
    """NumPy broadcasting over static and symbolic sizes (a symbol broadcasts only
    against itself or 1; two symbols that may be joined are, nngraph/sizes.py)."""
    nd = max(n.ndim for n in nodes)
    out = []
    for k in range(nd):
        sizes = [n.shape[k - nd + n.ndim] for n in nodes if k - nd + n.ndim >= 0]
        s = 1
        for t in sizes:
            if t == 1:
                continue
            joined = t if s == 1 else join(s, t)
            if joined is None:
                raise shape_error(op, f"cannot broadcast sizes {s} and {t} (axis {k - nd} from the end)", *nodes)
            s = joined
        out.append(s)
    return tuple(out)


# The gradient helpers below make movement and reduction nodes by op name (the ops
# are registered by the time a gradient is built), so this module imports neither
# ops/movement.py nor ops/reduce.py, which build on it.

def zeros_like(x: Tensor) -> Tensor:
    return make("broadcast_to", (constant(np.zeros((), np_dtype(x.dtype))),), shape=tuple(x.shape))


def ones_like(x: Tensor) -> Tensor:
    return make("broadcast_to", (constant(np.ones((), np_dtype(x.dtype))),), shape=tuple(x.shape))


def unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum g over the axes that broadcasting added or stretched, back to `shape`.
    Added (leading) axes are summed away without keepdims: sum(matmul(Aᵀ, D), axes=(0,))
    is the form passes/lower/matmul.py folds into one GEMM (a weight's gradient
    over a batch of sequences) instead of a batched product summed afterwards."""
    if tuple(g.shape) == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    stretched = tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    if stretched:
        g = make("sum", (g,), axes=stretched, keepdims=True)
    if lead:
        g = make("sum", (g,), axes=tuple(range(lead)), keepdims=False)
    return g if tuple(g.shape) == tuple(shape) else make("reshape", (g,), shape=tuple(shape))


def _float_or_error(op, x):
    if not is_float(x.dtype):
        raise shape_error(op, f"needs a float operand, got {x.dtype}", x)


def _int_or_error(op, *xs):
    if any(is_float(x.dtype) or x.dtype == "bool" for x in xs):
        given = " and ".join(x.dtype for x in xs)
        raise shape_error(op, f"needs integer operands (int32, int64), got {given}", *xs)


# ----------------------------------------------------------------------------- unary

UNARY_REFS = {}


def _unary(name, ref, vjp, float_only=True, out_dtype=None, canonicalize=None, nondiff=False, doc="", cost=None,
           int_only=False):
    def infer(inputs, attrs):
        (x,) = inputs
        if float_only:
            _float_or_error(name, x)
        if int_only:
            _int_or_error(name, x)
        return TensorType(out_dtype or x.dtype, x.shape)

    def reference(ctx, a):
        with np.errstate(all="ignore"):
            return np.asarray(ref(a)).astype(np_dtype(out_dtype or ctx.node.inputs[0].dtype), copy=False)

    UNARY_REFS[name] = ref
    register(Op(name, "elementwise", infer, reference,
                (lambda node, g, needs: (vjp(node, g),)) if vjp else None,
                canonicalize=canonicalize, nondiff=nondiff, doc=doc, cost=cost))

    def builder(x):
        (x,) = _coerce(x)
        return make(name, (x,))

    builder.__name__ = name
    builder.__doc__ = doc
    return builder


def _sigmoid_ref(a):
    # stable for either sign: exp never overflows
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def _softplus_ref(a):
    return np.logaddexp(np.zeros_like(a), a)


def _build(op, *inputs):
    return make(op, inputs)


def log_of_sigmoid(z, build=_build):
    """log(sigmoid z) in its stable form -softplus(-z), finite for any z (and so is its
    gradient). The one statement of this rewrite: log's build-time canonical form below
    and the stabilisation pass (passes/rewrites/stabilize.py, for graphs read from
    text) both build it, each with its own node maker build(op, *inputs)."""
    return build("neg", build("softplus", build("neg", z)))


def log_of_one_minus_sigmoid(z, build=_build):
    """log(1 - sigmoid z) in its stable form -softplus(z) (see log_of_sigmoid)."""
    return build("neg", build("softplus", z))


def _log_canon(inputs, attrs):
    """Stable forms chosen as the node is made: log(exp z) -> z,
    log(sigmoid z) -> -softplus(-z), log(1 - sigmoid z) -> -softplus(z)."""
    (x,) = inputs
    if x.op == "exp":
        return x.inputs[0]
    if x.op == "sigmoid":
        return log_of_sigmoid(x.inputs[0])
    if x.op == "sub" and x.inputs[1].op == "sigmoid" and _is_const(x.inputs[0], 1.0):
        z = x.inputs[1].inputs[0]
        if x.shape == z.shape:
            return log_of_one_minus_sigmoid(z)
    for rewrite in LOG_REWRITES:
        y = rewrite(x)
        if y is not None:
            return y
    return None


# more stable forms of log(x), registered by the modules that define x's op
# (reduce.py: log(sum(exp z))), which this module cannot import
LOG_REWRITES: list = []


def _is_const(x, v) -> bool:
    return x.op == "constant" and x.attrs["value"].array.size == 1 and float(x.attrs["value"].array.reshape(())) == v


neg = _unary("neg", np.negative, lambda n, g: neg(g), float_only=False, doc="-x",
             canonicalize=lambda i, a: i[0].inputs[0] if i[0].op == "neg" else None)
exp = _unary("exp", np.exp, lambda n, g: mul(g, n), cost=Op.EXPENSIVE, doc="e**x")
log = _unary("log", np.log, lambda n, g: div(g, n.inputs[0]), canonicalize=_log_canon, cost=Op.EXPENSIVE,
             doc="natural log")
log1p = _unary("log1p", np.log1p, lambda n, g: div(g, add(n.inputs[0], 1.0)), cost=Op.EXPENSIVE,
               doc="log(1 + x), exact near 0")
expm1 = _unary("expm1", np.expm1, lambda n, g: mul(g, add(n, 1.0)), cost=Op.EXPENSIVE,
               doc="exp(x) - 1, exact near 0")
sqrt = _unary("sqrt", np.sqrt, lambda n, g: div(mul(g, 0.5), n), cost=Op.EXPENSIVE, doc="square root")
rsqrt = _unary("rsqrt", lambda a: 1 / np.sqrt(a), lambda n, g: mul(mul(g, -0.5), mul(n, mul(n, n))),
               cost=Op.EXPENSIVE, doc="1/sqrt(x), for normalisation")
abs = _unary("abs", np.abs, lambda n, g: mul(g, sign(n.inputs[0])), float_only=False, doc="|x|")
sign = _unary("sign", np.sign, lambda n, g: zeros_like(n.inputs[0]), float_only=False, doc="-1, 0 or 1")
sin = _unary("sin", np.sin, lambda n, g: mul(g, cos(n.inputs[0])), cost=Op.EXPENSIVE, doc="sine")
cos = _unary("cos", np.cos, lambda n, g: neg(mul(g, sin(n.inputs[0]))), cost=Op.EXPENSIVE, doc="cosine")
tanh = _unary("tanh", np.tanh, lambda n, g: mul(g, sub(1.0, mul(n, n))), cost=Op.EXPENSIVE, doc="hyperbolic tangent")
sigmoid = _unary("sigmoid", _sigmoid_ref, lambda n, g: mul(mul(g, n), sub(1.0, n)), cost=Op.EXPENSIVE,
                 doc="1/(1+e**-x), stable")
relu = _unary("relu", lambda a: np.maximum(a, 0), lambda n, g: where(greater(n.inputs[0], 0.0), g, zeros_like(g)),
              float_only=False, doc="max(x, 0); gradient 0 at 0")
softplus = _unary("softplus", _softplus_ref, lambda n, g: mul(g, sigmoid(n.inputs[0])),
                  cost=Op.EXPENSIVE, doc="log(1 + e**x), stable for any magnitude")
step = _unary("step", lambda a: (a >= 0).astype(a.dtype), lambda n, g: zeros_like(n.inputs[0]),
              float_only=False, doc="the unit step: 1 where x >= 0 else 0; gradient 0")
logical_not = _unary("logical_not", np.logical_not, None, float_only=False, out_dtype="bool", nondiff=True,
                     doc="not x (bool)")
bitwise_not = _unary("bitwise_not", np.invert, None, float_only=False, int_only=True, nondiff=True,
                     doc="~x on the two's complement bits of an integer")
stop_gradient = _unary("stop_gradient", lambda a: a, lambda n, g: None, float_only=False,
                       doc="identity whose gradient is zero")


# ----------------------------------------------------------------------------- binary

BINARY_REFS = {}


def _binary(name, ref, vjp, kind="arith", nondiff=False, doc="", cost=None):
    def infer(inputs, attrs):
        a, b = inputs
        shape = broadcast_shapes(name, a, b)
        if kind == "compare":
            if (a.dtype == "bool") != (b.dtype == "bool"):
                raise shape_error(name, f"cannot compare {a.dtype} with {b.dtype}", a, b)
            return TensorType("bool", shape)
        if kind == "logical":
            if a.dtype != "bool" or b.dtype != "bool":
                raise shape_error(name, "needs bool operands", a, b)
            return TensorType("bool", shape)
        if "bool" in (a.dtype, b.dtype) and a.dtype != b.dtype:
            raise shape_error(name, f"cannot mix bool with {a.dtype if b.dtype == 'bool' else b.dtype}; cast first", a, b)
        dt = promote(a.dtype, b.dtype)
        if kind == "div" and not is_float(dt):
            dt = "float32"
        if kind == "bitwise":
            _int_or_error(name, a, b)
        if kind == "float" and not is_float(dt):
            raise shape_error(name, f"needs float operands, got {a.dtype} and {b.dtype}", a, b)
        return TensorType(dt, shape)

    def reference(ctx, a, b):
        dt = np_dtype(ctx.node.dtype)
        if kind in ("arith", "div", "float", "bitwise"):
            a, b = a.astype(dt, copy=False), b.astype(dt, copy=False)
        with np.errstate(all="ignore"):
            return np.asarray(ref(a, b)).astype(dt, copy=False)

    BINARY_REFS[name] = ref
    register(Op(name, "elementwise", infer, reference, vjp, nondiff=nondiff, doc=doc, category=kind,
                cost=cost))

    def builder(a, b):
        a, b = _coerce(a, b)
        return make(name, (a, b))

    builder.__name__ = name
    builder.__doc__ = doc
    return builder


def _vjp_add(n, g, needs):
    a, b = n.inputs
    return (unbroadcast(g, a.shape) if needs[0] else None, unbroadcast(g, b.shape) if needs[1] else None)


def _vjp_sub(n, g, needs):
    a, b = n.inputs
    return (unbroadcast(g, a.shape) if needs[0] else None, unbroadcast(neg(g), b.shape) if needs[1] else None)


def _vjp_mul(n, g, needs):
    a, b = n.inputs
    return (unbroadcast(mul(g, b), a.shape) if needs[0] else None,
            unbroadcast(mul(g, a), b.shape) if needs[1] else None)


def _vjp_div(n, g, needs):
    a, b = n.inputs
    ga = unbroadcast(div(g, b), a.shape) if needs[0] else None
    gb = unbroadcast(neg(div(mul(g, n), b)), b.shape) if needs[1] else None
    return ga, gb


def _vjp_pow(n, g, needs):
    a, b = n.inputs
    ga = gb = None
    if needs[0]:
        ga = unbroadcast(mul(g, mul(b, pow(a, sub(b, 1.0)))), a.shape)
    if needs[1]:
        # d/db a**b = log(a) a**b, taken as 0 where a == 0 (the limit for b > 0)
        safe = where(equal(a, 0.0), ones_like(a), a)
        gb = unbroadcast(mul(g, mul(n, log(safe))), b.shape)
    return ga, gb


def _vjp_select(pick_a):
    def vjp(n, g, needs):
        a, b = n.inputs
        # ties send the gradient to the first operand, as PyTorch's maximum halves it; we pick one
        cond = greater_equal(a, b) if pick_a == "max" else less_equal(a, b)
        z = zeros_like(g)
        return (unbroadcast(where(cond, g, z), a.shape) if needs[0] else None,
                unbroadcast(where(cond, z, g), b.shape) if needs[1] else None)
    return vjp


def _vjp_remainder(n, g, needs):
    """mod and fmod: a - q * b with q = floor(a / b) (mod) or trunc(a / b) (fmod), piecewise
    constant, so d/da = 1 and d/db = -q, with q = (a - r) / b from the result itself."""
    a, b = n.inputs
    ga = unbroadcast(g, a.shape) if needs[0] else None
    gb = unbroadcast(neg(mul(g, div(sub(a, n), b))), b.shape) if needs[1] else None
    return ga, gb


add = _binary("add", np.add, _vjp_add, doc="a + b")
sub = _binary("sub", np.subtract, _vjp_sub, doc="a - b")
mul = _binary("mul", np.multiply, _vjp_mul, doc="a * b")
div = _binary("div", np.divide, _vjp_div, kind="div", cost=Op.EXPENSIVE, doc="a / b (true division)")
pow = _binary("pow", np.power, _vjp_pow, kind="float", cost=Op.EXPENSIVE, doc="a ** b")
maximum = _binary("maximum", np.maximum, _vjp_select("max"), doc="elementwise max")
minimum = _binary("minimum", np.minimum, _vjp_select("min"), doc="elementwise min")
mod = _binary("mod", np.mod, _vjp_remainder,
              doc="a % b as Python and np.mod: the sign of the divisor (nngraph/semantics.py)")
fmod = _binary("fmod", np.fmod, _vjp_remainder,
               doc="C's fmod, as np.fmod: the sign of the dividend (nngraph/semantics.py)")
trunc_div = _binary("trunc_div", semantics.trunc_div_reference, None, kind="bitwise", nondiff=True,
                    cost=Op.EXPENSIVE,
                    doc="C's integer a / b, exact, truncated toward zero (ONNX's integer Div); "
                        "a / 0 = 0, INT_MIN / -1 = INT_MIN (nngraph/semantics.py)")
less = _binary("less", np.less, None, kind="compare", nondiff=True, doc="a < b")
less_equal = _binary("less_equal", np.less_equal, None, kind="compare", nondiff=True, doc="a <= b")
greater = _binary("greater", np.greater, None, kind="compare", nondiff=True, doc="a > b")
greater_equal = _binary("greater_equal", np.greater_equal, None, kind="compare", nondiff=True, doc="a >= b")
equal = _binary("equal", np.equal, None, kind="compare", nondiff=True, doc="a == b")
not_equal = _binary("not_equal", np.not_equal, None, kind="compare", nondiff=True, doc="a != b")
logical_and = _binary("logical_and", np.logical_and, None, kind="logical", nondiff=True, doc="a and b")
logical_or = _binary("logical_or", np.logical_or, None, kind="logical", nondiff=True, doc="a or b")
bitwise_and = _binary("bitwise_and", np.bitwise_and, None, kind="bitwise", nondiff=True,
                      doc="a & b on the two's complement bits of integers")
bitwise_or = _binary("bitwise_or", np.bitwise_or, None, kind="bitwise", nondiff=True,
                     doc="a | b on the two's complement bits of integers")
bitwise_xor = _binary("bitwise_xor", np.bitwise_xor, None, kind="bitwise", nondiff=True,
                      doc="a ^ b on the two's complement bits of integers")


# ----------------------------------------------------------------------------- where, cast


def _where_infer(inputs, attrs):
    c, a, b = inputs
    if c.dtype != "bool":
        raise shape_error("where", f"condition must be bool, got {c.dtype}", c)
    if a.dtype != b.dtype:
        raise shape_error("where", f"branches differ in dtype: {a.dtype} and {b.dtype}", a, b)
    return TensorType(a.dtype, broadcast_shapes("where", c, a, b))


def _where_vjp(n, g, needs):
    c, a, b = n.inputs
    z = zeros_like(g)
    return (None,
            unbroadcast(where(c, g, z), a.shape) if needs[1] else None,
            unbroadcast(where(c, z, g), b.shape) if needs[2] else None)


register(Op("where", "elementwise", _where_infer, lambda ctx, c, a, b: np.where(c, a, b), _where_vjp,
            doc="a where cond else b; the gradient selects, never multiplies by a mask"))


def where(cond, a, b) -> Tensor:
    """Elementwise choice. Python scalars take the other branch's dtype."""
    if isinstance(cond, (bool, np.bool_)):
        cond = constant(np.asarray(cond))
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = constant(a)
    a, b = _coerce(a, b)
    if a.dtype != b.dtype:
        dt = promote(a.dtype, b.dtype)
        a, b = cast(a, dt), cast(b, dt)
    return make("where", (as_tensor(cond), a, b))


def _cast_infer(inputs, attrs):
    return TensorType(attrs["dtype"], inputs[0].shape)


def _cast_vjp(n, g, needs):
    x = n.inputs[0]
    if is_float(x.dtype) and is_float(n.dtype):
        return (cast(g, x.dtype),)
    return (None,)


def _cast_ref(ctx, a):
    return a.astype(np_dtype(ctx.attrs["dtype"]))


register(Op("cast", "elementwise", _cast_infer, _cast_ref, _cast_vjp,
            canonicalize=lambda i, a: i[0] if i[0].dtype == a["dtype"] else None,
            doc="convert to another dtype"))


def cast(x, dtype) -> Tensor:
    (x,) = _coerce(x)
    return make("cast", (x,), dtype=as_dtype(dtype))


# ----------------------------------------------------------------------------- index-based sources


def _iota_infer(inputs, attrs):
    return TensorType(attrs["dtype"], attrs["shape"])


def _iota_ref(ctx):
    shape = ctx.out_shape
    ax = ctx.attrs["axis"]
    r = np.arange(shape[ax], dtype=np_dtype(ctx.attrs["dtype"]))
    return np.broadcast_to(r.reshape([-1 if i == ax else 1 for i in range(len(shape))]), shape).copy()


register(Op("iota", "elementwise", _iota_infer, _iota_ref, None,
            doc="the index along `axis` at each point (0, 1, 2, ...)"))


def iota(shape, axis=0, dtype="int32") -> Tensor:
    return make("iota", (), shape=tuple(shape), axis=int(axis), dtype=as_dtype(dtype))


def _numel_ref(ctx):
    return np.asarray(int(np.prod(ctx.resolve(ctx.attrs["sizes"]), dtype=np.int64)), dtype=np_dtype(ctx.attrs["dtype"]))


register(Op("numel", "elementwise", lambda i, a: TensorType(a["dtype"], ()), _numel_ref, None,
            doc="the product of some (possibly symbolic) sizes, as a scalar"))


def numel(sizes, dtype="float32") -> Tensor:
    """The product of `sizes` as a scalar; a constant when every size is an int."""
    sizes = tuple(sizes)
    if all(isinstance(s, int) for s in sizes):
        return constant(np.asarray(int(np.prod(sizes, dtype=np.int64)), dtype=np_dtype(as_dtype(dtype))))
    return make("numel", (), sizes=sizes, dtype=as_dtype(dtype))
