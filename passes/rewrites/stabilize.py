"""Numerical stabilisation: what a user writes by hand, rewritten to forms that stay
finite for finite inputs of any magnitude. A correctness feature, not a speed one.

The composites of nngraph/functional.py already build stable forms (and `ng.grad`
differentiates those), so these rules catch hand-written formulas and graphs read
from text. Gradients are built before the pipeline runs: a rule repairs the value
it matches, and a gradient only where the gradient itself contains the pattern.

    log(sigmoid x)                 -> -softplus(-x)
    log(1 - sigmoid x)             -> -softplus(x)        (also log1p(-sigmoid x))
    log(1 + x), log(x + 1)         -> log1p(x)
    log(1 - x)                     -> log1p(-x)
    exp(x) - 1                     -> expm1(x)
    1 / (1 + exp(-x))              -> sigmoid(x)
    exp(x) / sum(exp(x))           -> exp(x - m) / sum(exp(x - m)),  m = max(x) over the same axes
    log(exp(x) / sum(exp(x)))      -> x - log(sum(exp(x)))             (log_softmax form)
    log(sum(exp(x)))               -> m + log(sum(exp(x - m)))         (logsumexp, max subtracted)

Binary cross-entropy written on a sigmoid, -(t log p + (1 - t) log(1 - p)) with
p = sigmoid(z), becomes t softplus(-z) + (1 - t) softplus(z) through the first two
rules: finite for any z.
"""
from __future__ import annotations

from nngraph.node import Tensor
from nngraph.ops.elementwise import log_of_one_minus_sigmoid, log_of_sigmoid
from nngraph.ops.reduce import reduced_shape

from .patterns import fit, is_value, node, strip


def _at(n):
    """A node maker for the shared rewrites of nngraph/ops/elementwise.py: nodes at n."""
    return lambda op, *inputs: node(op, inputs, n)


def log_sigmoid(n):
    """log(sigmoid x) -> -softplus(-x)."""
    if n.op == "log" and n.inputs[0].op == "sigmoid":
        return log_of_sigmoid(n.inputs[0].inputs[0], _at(n))
    return None


def log_one_minus_sigmoid(n):
    """log(1 - sigmoid x) -> -softplus(x); log1p(-sigmoid x) -> -softplus(x)."""
    s = None
    if n.op == "log" and n.inputs[0].op == "sub" and is_value(n.inputs[0].inputs[0], 1):
        s = n.inputs[0].inputs[1]
    elif n.op == "log1p" and n.inputs[0].op == "neg":
        s = n.inputs[0].inputs[0]
    if s is not None and s.op == "sigmoid":
        return fit(log_of_one_minus_sigmoid(s.inputs[0], _at(n)), n)
    return None


def log_one_plus(n):
    """log(1 + x) -> log1p(x), log(1 - x) -> log1p(-x): exact for small x."""
    if n.op != "log" or n.inputs[0].op not in ("add", "sub"):
        return None
    s = n.inputs[0]
    a, b = s.inputs
    if s.op == "add":
        x = b if is_value(a, 1) else a if is_value(b, 1) else None
    else:
        x = node("neg", (b,), n) if is_value(a, 1) and b.dtype == n.dtype else None
    if x is None or x.dtype != n.dtype:
        return None
    return fit(node("log1p", (x,), n), n)


def exp_minus_one(n):
    """exp(x) - 1 -> expm1(x), also exp(x) + (-1)."""
    if n.op == "sub" and n.inputs[0].op == "exp" and is_value(n.inputs[1], 1):
        return fit(node("expm1", (n.inputs[0].inputs[0],), n), n)
    if n.op == "add":
        a, b = n.inputs
        for e, c in ((a, b), (b, a)):
            if e.op == "exp" and is_value(c, -1):
                return fit(node("expm1", (e.inputs[0],), n), n)
    return None


def naive_sigmoid(n):
    """1 / (1 + exp(-x)) -> sigmoid(x) (the naive form overflows to 1/inf = 0 silently,
    and its log to -inf)."""
    if n.op == "div" and is_value(n.inputs[0], 1) and n.inputs[1].op == "add":
        a, b = n.inputs[1].inputs
        e = b if is_value(a, 1) else a if is_value(b, 1) else None
        if e is not None and e.op == "exp" and e.inputs[0].op == "neg":
            return fit(node("sigmoid", (e.inputs[0].inputs[0],), n), n)
    return None


# ----------------------------------------------------------------------------- softmax family


def _sum_of_exp(d: Tensor):
    """(exp node, axes) when `d`, as a divisor of exp(x), is sum(exp(x)) over `axes`
    lined up with x: kept dims, or the kept shape restored by a reshape, or (without
    kept dims) leading axes that broadcasting puts back; optionally broadcast. Else None."""
    if d.op == "broadcast_to":
        d = d.inputs[0]
    if d.op == "reshape":
        s = d.inputs[0]
        if s.op != "sum" or s.attrs["keepdims"] or \
                tuple(d.shape) != reduced_shape(s.inputs[0].shape, s.attrs["axes"], True):
            return None
    else:
        s = d
        if s.op != "sum" or (not s.attrs["keepdims"] and tuple(s.attrs["axes"]) != tuple(range(len(s.attrs["axes"])))):
            return None
    if s.inputs[0].op != "exp":
        return None
    return s.inputs[0], tuple(s.attrs["axes"])


def _max_shifted(x: Tensor, axes) -> bool:
    """x is y - max(y) over `axes` already (the stable forms this module builds, and
    those nngraph.functional builds)."""
    if x.op != "sub":
        return False
    m = strip(x.inputs[1], ("broadcast_to", "reshape", "stop_gradient"))
    return m.op == "max" and m.inputs[0] is x.inputs[0] and tuple(m.attrs["axes"]) == tuple(axes)


def _shifted(x: Tensor, axes, at: Tensor) -> Tensor:
    """x - max(x, axes, keepdims), the max taken as -inf over an empty axis (the shift
    of a log-sum-exp: the log of an empty sum is -inf; NumPy's max would raise)."""
    m = node("max", (x,), at, axes=axes, keepdims=True, empty_identity=True)
    return node("sub", (x, m), at)


def _softmax_parts(n: Tensor):
    """(x, axes) when n is exp(x) / sum(exp(x), axes) with the sum kept or broadcast back."""
    if n.op != "div":
        return None
    e, d = n.inputs
    found = _sum_of_exp(d)
    if e.op != "exp" or found is None or found[0] is not e:
        return None
    x, axes = e.inputs[0], found[1]
    if tuple(x.shape) != tuple(n.shape):
        return None
    return x, axes


def naive_softmax(n):
    """exp(x) / sum(exp(x)) -> exp(x - m) / sum(exp(x - m)) with m = max(x) over the axes."""
    parts = _softmax_parts(n)
    if parts is None or _max_shifted(parts[0], parts[1]):
        return None
    x, axes = parts
    e = node("exp", (_shifted(x, axes, n),), n)
    return node("div", (e, node("sum", (e,), n, axes=axes, keepdims=True)), n)


def log_softmax(n):
    """log(exp(x) / sum(exp(x))) -> x - log(sum(exp(x))) (and the next rule subtracts the max)."""
    if n.op != "log":
        return None
    parts = _softmax_parts(n.inputs[0])
    if parts is None:
        return None
    x, axes = parts
    e = n.inputs[0].inputs[0]
    s = node("sum", (e,), n, axes=axes, keepdims=True)
    return node("sub", (x, node("log", (s,), n)), n)


def logsumexp(n):
    """log(sum(exp(x))) -> m + log(sum(exp(x - m))) with m = max(x) over the summed axes."""
    if n.op != "log" or n.inputs[0].op != "sum" or n.inputs[0].inputs[0].op != "exp":
        return None
    s = n.inputs[0]
    x, axes = s.inputs[0].inputs[0], tuple(s.attrs["axes"])
    if not axes or _max_shifted(x, axes):
        return None
    m = node("max", (x,), n, axes=axes, keepdims=True, empty_identity=True)
    inner = node("sum", (node("exp", (node("sub", (x, m), n),), n),), n, axes=axes, keepdims=True)
    y = node("add", (m, node("log", (inner,), n)), n)
    if not s.attrs["keepdims"]:
        y = node("reshape", (y,), n, shape=tuple(n.shape))
    return y


RULES = [
    log_sigmoid, log_one_minus_sigmoid, log_one_plus, exp_minus_one, naive_sigmoid,
    log_softmax, naive_softmax, logsumexp,
]
