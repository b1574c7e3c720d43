"""Finite-difference checks (float64, central differences) of ng.grad for every
differentiable op, gradients of gradients (tanh, sigmoid*x, conv2d, pooling, a
Hessian-vector product of an MLP), the course's reverse-mode trace, and the errors
for non-differentiable paths."""
import numpy as np
import pytest

import nngraph as ng
from helpers import check_grad, compile, rand, run
from nngraph.ops.conv import conv2d_grad_filter, conv2d_grad_input


def away(shape, seed, lo=0.2, hi=1.5):
    """Random values with |x| in [lo, hi): no kinks (relu, abs, clip) within eps."""
    rng = np.random.default_rng(seed)
    return rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


def pos(shape, seed):
    return rand(shape, seed, low=0.3, high=2.0)


UNARY = {
    "exp": (ng.exp, away), "log": (ng.log, pos), "log1p": (ng.log1p, pos), "expm1": (ng.expm1, away),
    "sqrt": (ng.sqrt, pos), "rsqrt": (ng.rsqrt, pos), "abs": (ng.abs, away), "sin": (ng.sin, away),
    "cos": (ng.cos, away), "tanh": (ng.tanh, away), "sigmoid": (ng.sigmoid, away), "relu": (ng.relu, away),
    "softplus": (ng.softplus, away), "neg": (ng.neg, away), "leaky_relu": (lambda x: ng.leaky_relu(x, 0.2), away),
    "elu": (ng.elu, away), "selu": (ng.selu, away), "clip": (lambda x: ng.clip(x, -0.7, 0.9), away),
    "step": (ng.step, away), "sign": (ng.sign, away), "pow_const": (lambda x: x ** 3.0, away),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_gradient(name, target):
    build, data = UNARY[name]
    for shape in [(), (2, 1, 3)]:
        a = data(shape, 1)
        if name == "clip":  # keep away from the bounds too
            a = np.where(np.abs(np.abs(a) - 0.8) < 0.15, a * 0.5, a)
        check_grad(build, [a], target)


def test_gradient_is_zero_through_step_sign_and_stop_gradient(target):
    a = away((3,), 2)
    x = ng.placeholder((3,), "float64")
    gs = [ng.grad(ng.sum(f(x) * x), x) for f in (ng.step, ng.sign, ng.stop_gradient)]
    for f, g in zip((lambda v: (v >= 0).astype(float), np.sign, lambda v: v), run(gs, {x: a}, target)):
        np.testing.assert_allclose(g, f(a))  # only the direct factor x contributes


BINARY_PAIRS = [((2, 3), (2, 3)), ((2, 3), (3,)), ((3, 1), (1, 4)), ((), (2, 2)), ((2, 1, 3), (1,))]


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
def test_binary_gradient_with_broadcasting(name, target):
    build = getattr(ng, name)
    for k, (sa, sb) in enumerate(BINARY_PAIRS):
        if name == "pow":
            a, b = pos(sa, k), away(sb, k + 9)
        elif name in ("maximum", "minimum"):
            a = away(sa, k)
            b = a.mean() + 0.05 + away(sb, k + 9) if sb == () else away(sb, k + 9)
            if np.min(np.abs(np.subtract(a, b))) < 1e-3:
                continue
        else:
            a, b = away(sa, k), away(sb, k + 9)
        check_grad(build, [a, b], target)


def test_where_and_cast_gradients(target):
    c = rand((3, 4), 3) > 0
    check_grad(lambda a, b, m: ng.where(m, a * a, ng.sin(b)), [away((3, 4), 1), away((4,), 2), c], target)
    x = ng.placeholder((3,), "float64")
    g = run(ng.grad(ng.sum(ng.cast(x, "float32") * 2.0), x), {x: away((3,), 4)}, target)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [2.0, 2.0, 2.0])


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (-1, True), ((0, 2), False), ((1,), True)])
def test_reduction_gradients(axis, keepdims, target):
    a = rand((3, 2, 4), 5)  # continuous random data: no ties for max/min
    for f in (ng.sum, ng.mean, ng.max, ng.min):
        check_grad(lambda x: f(x, axis=axis, keepdims=keepdims), [a], target)
    check_grad(lambda x: ng.logsumexp(x, axis=axis if axis is not None else (0, 1, 2), keepdims=keepdims), [a], target)


def test_max_gradient_shares_ties_equally(target):
    x = ng.placeholder((4,), "float64")
    g = run(ng.grad(ng.max(x), x), {x: np.array([1.0, 3.0, 3.0, 2.0])}, target)
    np.testing.assert_allclose(g, [0, 0.5, 0.5, 0])


MOVEMENT = [
    ("reshape", lambda x: ng.reshape(x, (4, -1)) * np.arange(6.0)),
    ("transpose", lambda x: ng.transpose(x, (2, 0, 1))),
    ("T", lambda x: x.T),
    ("broadcast_to", lambda x: ng.broadcast_to(x[:, :1], (5, 2, 1, 4))),
    ("concatenate", lambda x: ng.concatenate([x, ng.sin(x), x[:, :, :1]], 2)),
    ("stack", lambda x: ng.stack([x, x * x], 1)),
    ("expand_squeeze", lambda x: ng.squeeze(ng.expand_dims(x, (0, 2)) * 2.0, 2)),
    ("pad", lambda x: ng.pad(x, ((1, 0), (0, 2), (3, 1)), value=0.5)),
    ("getitem", lambda x: x[1, ::2, 1:3]),
    ("getitem_ellipsis", lambda x: x[..., None, 2]),
    ("flatten", lambda x: ng.flatten(x)),
]


@pytest.mark.parametrize("name", [m[0] for m in MOVEMENT])
def test_movement_gradient(name, target):
    build = dict(MOVEMENT)[name]
    check_grad(build, [rand((2, 3, 4), 6)], target)


MATMUL = [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (2, 4, 2)),
          ((2, 3, 4), (4, 2)), ((1, 3, 4), (3, 4, 2)), ((2, 1, 2, 3), (3, 3, 2))]


@pytest.mark.parametrize("sa,sb", MATMUL)
def test_matmul_gradient_batched_and_broadcast(sa, sb, target):
    check_grad(ng.matmul, [rand(sa, 1), rand(sb, 2)], target)


def test_dot_gradient(target):
    check_grad(ng.dot, [rand((4,), 1), rand((4, 3), 2)], target)
    check_grad(ng.dot, [rand((), 1), rand((3,), 2)], target)


def test_gradients_with_a_symbolic_batch(target):
    check_grad(lambda x, w: ng.mean(ng.tanh(x @ w), 0), [rand((3, 4), 1), rand((4, 2), 2)], target,
               shapes=[("N", 4), (4, 2)])
    check_grad(lambda x: ng.mean(x * x), [rand((5, 2), 3)], target, shapes=[("N", 2)])


# ----------------------------------------------------------------------------- functional


def test_softmax_family_gradients(target):
    a = rand((3, 5), 1) * 2
    for axis in (-1, 0):
        check_grad(lambda x: ng.softmax(x, axis), [a], target)
        check_grad(lambda x: ng.log_softmax(x, axis), [a], target)
        check_grad(lambda x: ng.logsumexp(x, axis), [a], target)


def test_cross_entropy_gradients(target):
    logits, ids = rand((4, 5), 1) * 2, np.array([0, 4, 2, 2], np.int32)
    probs = np.exp(rand((4, 5), 2))
    probs /= probs.sum(-1, keepdims=True)
    g = check_grad(ng.cross_entropy, [logits, ids], target)[0]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(g, (e / e.sum(-1, keepdims=True) - np.eye(5)[ids]) / 4, rtol=1e-10)
    check_grad(ng.cross_entropy, [logits, probs], target)  # wrt logits and the soft labels
    check_grad(ng.cross_entropy, [logits, ids], target, shapes=[("N", 5), ("N",)])


def test_loss_gradients(target):
    z, t = rand((3, 4), 3) * 2, (rand((3, 4), 4) > 0).astype(float)
    p = 1 / (1 + np.exp(-z))
    check_grad(lambda a, b: ng.binary_cross_entropy(a, b, from_logits=True), [z, t], target)
    check_grad(ng.binary_cross_entropy, [p, t], target, wrt=[0])
    check_grad(lambda a, b: ng.binary_cross_entropy(ng.sigmoid(a), b), [z, t], target, wrt=[0])
    check_grad(ng.mse, [z, rand((3, 4), 5)], target)


def test_normalisation_gradients(target):
    a = rand((4, 3, 2, 2), 6) * 2 + 0.5
    g, b, m, v = rand((3,), 7), rand((3,), 8), rand((3,), 9), rand((3,), 10, low=0.5, high=2.0)
    check_grad(ng.batch_norm, [a, g, b], target, rtol=1e-4)
    check_grad(lambda x, ga, be, mu, va: ng.batch_norm(x, ga, be, mean=mu, var=va), [a, g, b, m, v], target)
    x2 = rand((3, 5), 11) * 3
    check_grad(lambda x, ga, be: ng.layer_norm(x, ga, be), [x2, rand((5,), 12), rand((5,), 13)], target, rtol=1e-4)
    check_grad(lambda x: ng.stack(list(ng.moments(x, 0)), 0), [x2], target)


# ----------------------------------------------------------------------------- conv and pooling

CONV = [  # (x shape, w shape, attrs)
    ((2, 3, 5, 6), (4, 3, 3, 3), dict()),
    ((2, 3, 7, 6), (2, 3, 3, 2), dict(stride=2, padding=1)),
    ((1, 4, 7, 7), (4, 2, 3, 3), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)),
    ((2, 3, 6, 5), (3, 1, 2, 2), dict(padding="same", groups=3)),
    ((1, 2, 6, 6), (2, 2, 3, 3), dict(dilation=2, padding=((2, 0), (1, 1)))),
    ((2, 1, 10, 9), (2, 1, 9, 9), dict(padding=1)),                 # 81 taps: col2im's tap loop
    ((1, 3, 4, 4), (2, 3, 1, 1), dict()),                           # one example, 1x1: cols is x itself
]


@pytest.mark.parametrize("layout", ["batch", "example", "taps"])
@pytest.mark.parametrize("case", range(len(CONV)))
def test_conv2d_gradient(case, layout, target, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CONV_LAYOUT", layout)     # passes/lower/conv_layout.py
    xs, ws, attrs = CONV[case]
    check_grad(lambda x, w: ng.conv2d(x, w, **attrs), [rand(xs, case), rand(ws, case + 10)], target)


@pytest.mark.parametrize("case", [1, 2])
def test_conv_gradient_primitives_have_correct_vjps(case, target):
    """The vjp algebra of conv2d_grad_input and conv2d_grad_filter, by finite differences."""
    xs, ws, attrs = CONV[case]
    y = ng.conv2d(ng.placeholder(xs, "float64"), ng.placeholder(ws, "float64"), **attrs)
    full = dict(stride=y.attrs["stride"], padding=y.attrs["padding"], dilation=y.attrs["dilation"],
                groups=y.attrs["groups"])
    check_grad(lambda gy, w: conv2d_grad_input(gy, w, input_hw=xs[2:], **full), [rand(y.shape, 1), rand(ws, 2)], target)
    check_grad(lambda x, gy: conv2d_grad_filter(x, gy, kernel_hw=ws[2:], **full), [rand(xs, 3), rand(y.shape, 4)], target)


def test_conv2d_gradient_with_a_symbolic_batch(target):
    check_grad(lambda x, w: ng.mean(ng.conv2d(x, w, padding=1)), [rand((2, 2, 4, 4), 1), rand((3, 2, 3, 3), 2)],
               target, shapes=[("N", 2, 4, 4), (3, 2, 3, 3)])


POOL = [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 1))]


@pytest.mark.parametrize("k,s,p", POOL)
def test_pooling_gradients(k, s, p, target):
    a = rand((2, 2, 7, 6), 3)
    check_grad(lambda x: ng.max_pool2d(x, k, s, p), [a], target)
    check_grad(lambda x: ng.avg_pool2d(x, k, s, p), [a], target)
    check_grad(lambda x: ng.avg_pool2d(x, k, s, p, count_include_pad=False), [a], target)


# ----------------------------------------------------------------------------- gradients of gradients


def test_second_derivatives_of_tanh_and_sigmoid_times_x(target):
    a = away((2, 3), 1)
    r = rand((2, 3), 2)
    check_grad(lambda x: ng.grad(ng.sum(ng.tanh(x) * r), x), [a], target)
    check_grad(lambda x: ng.grad(ng.sum(ng.sigmoid(x) * x), x), [a], target)
    x = ng.placeholder((2, 3), "float64")
    h = run(ng.grad(ng.sum(ng.grad(ng.sum(ng.tanh(x)), x)), x), {x: a}, target)
    t = np.tanh(a)
    np.testing.assert_allclose(h, -2 * t * (1 - t * t), rtol=1e-12)


def test_hessian_of_a_cubic(target):
    a, c = rand((3,), 3), rand((3,), 4)
    x = ng.placeholder((3,), "float64")
    h = run(ng.hessian(ng.sum(x ** 3.0 * c), x), {x: a}, target)
    np.testing.assert_allclose(h, np.diag(6 * a * c), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", [1, 2])
def test_second_derivatives_through_conv2d(case, target):
    xs, ws, attrs = CONV[case]
    c = rand(ng.conv2d(ng.placeholder(xs), ng.placeholder(ws), **attrs).shape, 5)
    r1, r2 = rand(xs, 6), rand(ws, 7)

    def first_grads_projected(x, w):
        loss = ng.sum(ng.tanh(ng.conv2d(x, w, **attrs)) * c)
        gx, gw = ng.grad(loss, [x, w])
        return ng.sum(gx * r1) + ng.sum(gw * r2)
    check_grad(first_grads_projected, [rand(xs, 1) * 0.5, rand(ws, 2) * 0.5], target)


def test_second_derivatives_through_pooling(target):
    a = rand((1, 2, 6, 6), 8)
    c, r = rand((1, 2, 3, 3), 9), rand((1, 2, 6, 6), 10)
    check_grad(lambda x: ng.sum(ng.grad(ng.sum(ng.max_pool2d(x, 3, 2, 1) ** 3.0 * c), x) * r), [a], target)
    check_grad(lambda x: ng.sum(ng.grad(ng.sum(ng.avg_pool2d(x, 2) ** 3.0 * c), x) * r), [a], target)


def test_hessian_vector_product_of_an_mlp(target):
    X, Y = rand((6, 4), 1), np.array([0, 2, 1, 1, 0, 2], np.int32)
    W1v, W2v, V = rand((4, 5), 2) * 0.5, rand((5, 3), 3) * 0.5, rand((4, 5), 4)
    W1, v = ng.placeholder((4, 5), "float64", name="W1"), ng.placeholder((4, 5), "float64", name="v")
    W2 = ng.constant(W2v)
    loss = ng.cross_entropy(ng.tanh(ng.constant(X) @ W1) @ W2, ng.constant(Y))
    g = ng.grad(loss, W1)
    hv = ng.grad(ng.dot(ng.reshape(g, (-1,)), ng.reshape(v, (-1,))), W1)
    fn = compile([W1, v], [g, hv], target)
    eps = 1e-5
    fd = (fn(W1v + eps * V, V)[0] - fn(W1v - eps * V, V)[0]) / (2 * eps)
    np.testing.assert_allclose(fn(W1v, V)[1], fd, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- the course's trace and errors


def test_course_reverse_mode_trace(target):
    x1, x2 = ng.placeholder((), "float64", name="x1"), ng.placeholder((), "float64", name="x2")
    y = ng.log(x1) + x1 * x2 - ng.sin(x2)
    g1, g2 = ng.grad(y, [x1, x2])
    yv, d1, d2 = run([y, g1, g2], {x1: np.float64(2.0), x2: np.float64(5.0)}, target)
    assert round(float(yv), 3) == 11.652
    assert round(float(d1), 3) == 5.5
    assert round(float(d2), 3) == 1.716
    np.testing.assert_allclose([yv, d1, d2], [np.log(2) + 10 - np.sin(5), 0.5 + 5, 2 - np.cos(5)], rtol=1e-14)


def test_gradient_through_argmax_or_comparisons_raises():
    x = ng.placeholder((3, 4), name="x")
    with pytest.raises(ng.GradientError, match="argmax"):
        ng.grad(ng.sum(ng.cast(ng.argmax(x), "float32")), x)
    with pytest.raises(ng.GradientError, match="non-differentiable"):
        ng.grad(ng.sum(ng.cast(x > 0.0, "float32")), x)
    # a differentiable path next to the argmax one still gives its gradient
    g = ng.grad(ng.sum(x) + ng.sum(ng.cast(ng.argmax(x), "float32")), x)
    np.testing.assert_array_equal(run(g, {x: rand((3, 4), 1, "float32")}), np.ones((3, 4)))


def test_gradient_wrt_an_integer_placeholder_raises():
    i = ng.placeholder((3,), "int32", name="ids")
    with pytest.raises(ng.GradientError, match="ids.*integer"):
        ng.grad(ng.sum(ng.cast(i, "float32")), i)
    x = ng.placeholder((3,), name="x")
    with pytest.raises(ng.GradientError, match="does not depend"):
        ng.grad(ng.sum(ng.placeholder((2,))), x)
    with pytest.raises(ng.GradientError, match="scalar"):
        ng.grad(x, x)


def test_sigmoid_gradient_shares_the_forward_product():
    """sigmoid's gradient is (g * s) * (1 - s): where the upstream gradient g is the
    other factor of a forward product g * s (f = sum(t * sigmoid(x))), the fused
    kernel computes that product once. Its muls: x*a, t*s (shared), t*s*(1-s),
    t*t, s*(1-t*t), *a: six, not seven."""
    x = ng.placeholder(("N",), name="x")
    f = (ng.tanh(x * 0.7 + 0.1) * ng.sigmoid(x)).sum()
    fn = ng.compile([x], [f, ng.grad(f, [x])[0]], target="cpu")
    kernels = fn.dump("kernels")
    assert kernels.count(" = mul ") == 6, kernels
