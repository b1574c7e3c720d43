"""Neural-network functions composed from primitives, in their stable forms.

Nothing here is a primitive: the passes make these fast, and the forms chosen
here keep values and gradients finite for finite inputs of any magnitude.
"""
from __future__ import annotations

import numpy as np

from .node import Tensor, shape_error
from .ops import elementwise as ew
from .ops import movement as mv
from .ops import reduce as rd
from .sizes import reports_joins, same_shape
from .types import is_float

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def _t(x) -> Tensor:
    return ew.as_tensor(x)


def logsumexp(x, axis=-1, keepdims=False) -> Tensor:
    """log(sum(exp(x))) with the max subtracted first (never overflows); -inf over an
    empty axis (the log of an empty sum), as SciPy and PyTorch give."""
    x = _t(x)
    axes = rd.normalize_axes("logsumexp", x, axis)
    m = ew.stop_gradient(rd.max(x, axes, keepdims=True, empty_identity=True))
    y = ew.add(m, ew.log(rd.sum(ew.exp(ew.sub(x, m)), axes, keepdims=True)))
    return y if keepdims else mv.squeeze(y, axes)


def log_softmax(x, axis=-1) -> Tensor:
    """x - logsumexp(x): its gradient g - softmax * sum(g) stays finite."""
    x = _t(x)
    axes = rd.normalize_axes("log_softmax", x, axis)
    z = ew.sub(x, ew.stop_gradient(rd.max(x, axes, keepdims=True, empty_identity=True)))
    return ew.sub(z, ew.log(rd.sum(ew.exp(z), axes, keepdims=True)))


def softmax(x, axis=-1) -> Tensor:
    """exp(log_softmax(x)), so log(softmax(x)) simplifies to log_softmax(x) as it is built."""
    return ew.exp(log_softmax(x, axis))


def one_hot(labels, n: int, dtype="float32") -> Tensor:
    """labels[..., None] == arange(n), as `dtype`."""
    labels = _t(labels)
    if is_float(labels.dtype) or labels.dtype == "bool":
        raise shape_error("one_hot", f"labels must be integers, got {labels.dtype}", labels)
    ids = ew.iota(tuple(labels.shape) + (int(n),), axis=labels.ndim, dtype=labels.dtype)
    return ew.cast(ew.equal(mv.expand_dims(labels, -1), ids), dtype)


@reports_joins
def cross_entropy(logits, labels) -> Tensor:
    """Mean over the batch of -log softmax(logits)[label]. `labels` are class ids
    (integers, shape logits.shape[:-1]) or probabilities (logits' shape)."""
    logits, labels = _t(logits), _t(labels)
    if not is_float(logits.dtype):
        raise shape_error("cross_entropy", f"logits must be float, got {logits.dtype}", logits)
    lsm = log_softmax(logits, -1)
    if is_float(labels.dtype):
        if not same_shape(labels.shape, logits.shape):
            raise shape_error("cross_entropy", "probability targets must have the logits' shape", logits, labels)
        target = ew.cast(labels, logits.dtype)
    else:
        if not same_shape(labels.shape, logits.shape[:-1]):
            raise shape_error("cross_entropy", f"labels must have shape [{','.join(map(str, logits.shape[:-1]))}] "
                              "(one class id per row)", logits, labels)
        target = one_hot(labels, logits.shape[-1], logits.dtype)
    per_row = ew.neg(rd.sum(ew.mul(target, lsm), -1))
    return rd.mean(per_row)


@reports_joins
def binary_cross_entropy(p, targets, from_logits=False) -> Tensor:
    """Mean of -t log p - (1 - t) log(1 - p). With logits (or a sigmoid node as p)
    it is softplus(z) - t z, finite for any z; with probabilities each log is
    clamped at -100 (as PyTorch does)."""
    p, t = _t(p), _t(targets)
    p = _without_identities(p)      # simplify before stabilising: sigmoid(z) * 1.0 is sigmoid(z)
    if not from_logits and p.op == "sigmoid":
        p, from_logits = p.inputs[0], True
    t = ew.cast(t, p.dtype)
    ew.broadcast_shapes("binary_cross_entropy", p, t)
    if from_logits:
        return rd.mean(ew.sub(ew.softplus(p), ew.mul(t, p)))
    lp = _log_clamped(p, ew.log, 0.0)
    l1p = _log_clamped(ew.neg(p), ew.log1p, -1.0)
    return rd.mean(ew.neg(ew.add(ew.mul(t, lp), ew.mul(ew.sub(1.0, t), l1p))))


def _log_clamped(x, log, pole):
    """max(log(x), -100), with a zero gradient (not 0 * inf = NaN) where x is at the
    log's pole: the pole is replaced by a harmless value before the log is taken."""
    ok = ew.greater(x, pole)
    safe = ew.where(ok, x, ew.add(ew.mul(x, 0.0), pole + 1.0))
    return ew.where(ok, ew.maximum(log(safe), -100.0), -100.0)


def _without_identities(x):
    """x * 1, 1 * x, x / 1, x + 0, x - 0 -> x (same type), so a stable form is still seen."""
    while x.op in ("mul", "div", "add", "sub"):
        a, b = x.inputs
        one = x.op in ("mul", "div")
        if ew._is_const(b, 1.0 if one else 0.0) and a.type == x.type:
            x = a
        elif x.op in ("mul", "add") and ew._is_const(a, 1.0 if one else 0.0) and b.type == x.type:
            x = b
        else:
            break
    return x


@reports_joins
def mse(pred, target) -> Tensor:
    """Mean squared error over all elements."""
    pred, target = _t(pred), _t(target)
    d = ew.sub(pred, target)
    return rd.mean(ew.mul(d, d))


def leaky_relu(x, alpha=0.01) -> Tensor:
    x = _t(x)
    return ew.where(ew.greater(x, 0.0), x, ew.mul(x, alpha))


def elu(x, alpha=1.0) -> Tensor:
    """x if x > 0 else alpha (e**x - 1); the unselected branch never overflows."""
    x = _t(x)
    return ew.where(ew.greater(x, 0.0), x, ew.mul(ew.expm1(ew.minimum(x, 0.0)), alpha))


def selu(x) -> Tensor:
    return ew.mul(elu(x, SELU_ALPHA), SELU_SCALE)


def clip(x, lo, hi) -> Tensor:
    return ew.minimum(ew.maximum(_t(x), lo), hi)


def moments(x, axes, keepdims=False):
    """Mean and (biased) variance over `axes`."""
    x = _t(x)
    axes = rd.normalize_axes("moments", x, axes)
    m = rd.mean(x, axes, keepdims=True)
    d = ew.sub(x, m)
    v = rd.mean(ew.mul(d, d), axes, keepdims=True)
    if not keepdims:
        m, v = mv.squeeze(m, axes), mv.squeeze(v, axes)
    return m, v


def _feature_view(p, x, axis):
    """Reshape a per-feature vector so it broadcasts along `axis` of x."""
    p = _t(p)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    if p.ndim == 1:
        return mv.reshape(p, tuple(shape))
    return p


def batch_norm(x, gamma=None, beta=None, mean=None, var=None, axis=1, eps=1e-5) -> Tensor:
    """Normalise each feature (axis `axis`, 1 for NC and NCHW) over all other axes.

    Training mode: leave `mean`/`var` None and the batch statistics are used (get
    them with ng.moments to update running averages). Inference: pass the running
    mean and variance.
    """
    x = _t(x)
    axis = axis % x.ndim
    others = tuple(i for i in range(x.ndim) if i != axis)
    if mean is None or var is None:
        mean, var = moments(x, others, keepdims=True)
    else:
        mean, var = _feature_view(mean, x, axis), _feature_view(var, x, axis)
    y = ew.mul(ew.sub(x, mean), ew.rsqrt(ew.add(var, eps)))
    if gamma is not None:
        y = ew.mul(y, _feature_view(gamma, x, axis))
    if beta is not None:
        y = ew.add(y, _feature_view(beta, x, axis))
    return y


def layer_norm(x, gamma=None, beta=None, axis=-1, eps=1e-5) -> Tensor:
    """Normalise over `axis` (an int or tuple, default the last) per example."""
    x = _t(x)
    axes = rd.normalize_axes("layer_norm", x, axis)
    m, v = moments(x, axes, keepdims=True)
    y = ew.mul(ew.sub(x, m), ew.rsqrt(ew.add(v, eps)))
    if gamma is not None:
        y = ew.mul(y, gamma)
    if beta is not None:
        y = ew.add(y, beta)
    return y


def dropout(x, rate, training=True, seed=None) -> Tensor:
    """Inverted dropout: zero each element with probability `rate`, scale the rest by
    1/(1 - rate). The mask comes from a counter-based generator keyed by `seed` and
    a step counter that the compiled function advances on every call, so the same
    seed gives the same masks on every backend."""
    x = _t(x)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if not training or rate == 0.0:
        return x
    from .ops import random as rnd
    u = rnd.uniform(x.shape, seed=seed)
    keep = ew.greater_equal(u, ew.constant(np.asarray(rate, dtype=np.float32)))
    return ew.where(keep, ew.mul(x, 1.0 / (1.0 - rate)), ew.zeros_like(x))
