"""Backpropagation through time: the gradient of a scan is a reverse scan. Checked by
central differences in float64, against PyTorch autograd for an Elman RNN, for
gradients of gradients, and for what the forward loop stores."""
import numpy as np
import pytest

import nngraph as ng
from helpers import assert_roundtrip, check_grad, compile, rand
from scan_models import lstm_cell


def _rnn(x, h0, W, U, b, reverse=False):
    def step(h, xt):
        hn = ng.tanh(xt @ W + h @ U + b)
        return hn, hn * hn
    hT, ys = ng.scan(step, h0, x, reverse=reverse)
    return ng.sum(hT * 0.7) + ng.sum(ys)


@pytest.mark.parametrize("reverse", [False, True])
def test_bptt_matches_central_differences(reverse):
    arrays = [rand((6, 2, 3), 1), rand((2, 4), 2), rand((3, 4), 3) * 0.5, rand((4, 4), 4) * 0.4, rand((4,), 5)]
    check_grad(lambda *a: _rnn(*a, reverse=reverse), arrays, shapes=[("T", 2, 3), (2, 4), (3, 4), (4, 4), (4,)])


def test_bptt_with_length_zero_and_one():
    for T in (0, 1):
        arrays = [rand((T, 2, 3), 1), rand((2, 4), 2), rand((3, 4), 3), rand((4, 4), 4), rand((4,), 5)]
        check_grad(_rnn, arrays, shapes=[("T", 2, 3), (2, 4), (3, 4), (4, 4), (4,)])


def _lstm_like_step(W, U):
    def step(hc, xt):
        h, c = hc
        z = xt @ W + h @ U
        i, f, g, o = (ng.sigmoid(z[:, :3]), ng.sigmoid(z[:, 3:6]), ng.tanh(z[:, 6:9]), ng.sigmoid(z[:, 9:]))
        c2 = f * c + i * g
        h2 = o * ng.tanh(c2)
        return (h2, c2), h2
    return step


def test_tuple_carry_lstm_like_cell_matches_central_differences():
    def build(x, W, U):
        zeros = ng.constant(np.zeros((2, 3)))
        (h, c), hs = ng.scan(_lstm_like_step(W, U), (zeros, zeros), x)
        return ng.sum(hs * hs) + ng.sum(c)
    check_grad(build, [rand((5, 2, 4), 1), rand((4, 12), 2) * 0.5, rand((3, 12), 3) * 0.5])


def test_gradient_through_xs_only_and_through_closed_over_outer_values():
    def build(x, a):
        s = ng.exp(a) * 2.0                     # an outer value closed over
        c, ys = ng.scan(lambda c, xt: (c * ng.sin(xt) + s, ng.cos(c) * xt), ng.constant(np.ones(3)), x)
        return ng.sum(ys) + ng.sum(c * c)
    check_grad(build, [rand((4, 3), 1), rand((3,), 2)])


def test_elman_rnn_bptt_matches_pytorch_autograd():
    torch = pytest.importorskip("torch")
    T, N, F, H = 9, 3, 4, 5
    rnn = torch.nn.RNN(F, H, nonlinearity="tanh").double()
    X, H0, R = rand((T, N, F), 1), rand((1, N, H), 2), rand((T, N, H), 3)
    xt = torch.tensor(X, requires_grad=True)
    h0t = torch.tensor(H0, requires_grad=True)
    out, hn = rnn(xt, h0t)
    (torch.sum(out * torch.tensor(R)) + torch.sum(hn ** 2)).backward()

    x = ng.placeholder(("T", N, F), "float64", name="x")
    h0 = ng.placeholder((N, H), "float64", name="h0")
    r = ng.placeholder(("T", N, H), "float64", name="r")
    p = {k: ng.parameter(v.detach().numpy().T.copy() if v.ndim == 2 else v.detach().numpy().copy(), name=k)
         for k, v in rnn.named_parameters()}
    hT, hs = ng.scan(lambda h, xs: (lambda hn: (hn, hn))(
        ng.tanh(xs @ p["weight_ih_l0"] + p["bias_ih_l0"] + h @ p["weight_hh_l0"] + p["bias_hh_l0"])), h0, x)
    loss = ng.sum(hs * r) + ng.sum(hT * hT)
    wrt = [x, h0] + [p[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    got = compile([x, h0, r], [hs] + ng.grad(loss, wrt))(X, H0[0], R)
    np.testing.assert_allclose(got[0], out.detach().numpy(), rtol=1e-10)
    want = [xt.grad.numpy(), h0t.grad.numpy()[0]] + [
        rnn.get_parameter(k).grad.numpy().T if k.startswith("weight") else rnn.get_parameter(k).grad.numpy()
        for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    for g, w in zip(got[1:], want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


def test_gradient_of_gradient_matches_differences_of_the_gradient():
    U0 = rand((3, 3), 4) * 0.4
    X, V = rand((5, 2, 3), 1), rand((3, 3), 2)
    x = ng.placeholder(("T", 2, 3), "float64", name="x")
    u = ng.placeholder((3, 3), "float64", name="u")
    W = ng.parameter(rand((3, 3), 3) * 0.5, name="W")
    hT, hs = ng.scan(lambda h, xt: (lambda hn: (hn, hn))(ng.tanh(xt @ W + h @ u)), ng.constant(np.zeros((2, 3))), x)
    loss = ng.sum(hs * hs) + ng.sum(hT)
    gW = ng.grad(loss, W)
    hvp = ng.grad(ng.sum(gW * V), u)                      # second order, through both scans
    fn = compile([x, u], [gW, hvp])
    eps = 1e-6
    got = fn(X, U0)[1]
    for idx in np.ndindex(3, 3):
        d = np.zeros((3, 3))
        d[idx] = eps
        num = (np.sum(fn(X, U0 + d)[0] * V) - np.sum(fn(X, U0 - d)[0] * V)) / (2 * eps)
        np.testing.assert_allclose(got[idx], num, rtol=1e-6, atol=1e-9)
    assert_roundtrip(ng.Graph([x, u], [gW, hvp]))


def _scans(graph):
    return [n for n in graph.nodes() if n.op == "scan"]


def test_forward_runs_once_and_stores_only_what_the_backward_reads():
    x = ng.placeholder(("T", "N", 4), name="x")
    h0 = ng.placeholder(("N", 8), name="h0")
    W = ng.parameter(rand((4, 8), 1, "float32"), name="W")
    U = ng.parameter(rand((8, 8), 2, "float32"), name="U")
    hT, hs = ng.scan(lambda h, xt: (lambda hn: (hn, hn))(ng.tanh(xt @ W + h @ U)), h0, x)
    loss = ng.sum(hT)
    fn = compile([x, h0], [loss] + ng.grad(loss, [W, U]))
    forward, backward = sorted(_scans(fn.opt_graph), key=lambda s: s.attrs["reverse"])
    assert not forward.attrs["reverse"] and backward.attrs["reverse"]
    # per step: two residuals (1 - h*h, and the carry h[t-1]); the ys nobody reads are pruned
    stored = forward.type.parts[forward.attrs["body"].n_carry:]
    assert len(stored) == 2 and all(p.shape == (ng.Dim("T"), ng.Dim("N"), 8) for p in stored)
    # the backward product reads the recurrent weights transposed (a flag of the product,
    # inside the step), not a transposed copy made outside the loop at every call
    body = backward.attrs["body"]
    assert "transpose" not in {i.op for i in backward.inputs}
    (uT,) = [n for n in body.nodes() if n.op == "transpose"]
    assert uT.inputs[0] in body.closure_in and all(u.op == "matmul" for u in body.nodes() if uT in u.inputs)
    assert not any(k.name.startswith("k") and "transpose" in k.name for k in fn.runner.program.schedule)
    # the weight gradients are never stacked per step: the backward loop stores dz per
    # step and each weight gradient is one product over all steps after it
    assert [p.shape for p in backward.type.parts] == [(ng.Dim("N"), 8), (ng.Dim("T"), ng.Dim("N"), 8)]
    sums = [n for n in fn.opt_graph.nodes() if n.op == "sum" and n.inputs[0].op == "matmul"]
    assert sorted(n.shape for n in sums) == [(4, 8), (8, 8)]
    first = fn.stats()["passes"][0]
    assert first["pass"] == "merge_scan_twins" and first["rewrites"] == {"merge:scan_twin": 1}


def test_lstm_forward_stores_gates_in_one_stack_and_carries_and_recomputes_tanh_of_the_cell():
    H = 5
    x = ng.placeholder(("T", "N", 4), name="x")
    p = {k: ng.parameter(rand(shape, seed, "float32"), name=k)
         for seed, (k, shape) in enumerate((("Wx", (4, 4 * H)), ("Wh", (H, 4 * H)), ("b", (4 * H,))))}
    zeros = ng.broadcast_to(ng.constant(np.zeros((1, H), np.float32)), (x.shape[1], H))
    (hT, _), _ = ng.scan(lambda carry, x_t: (lstm_cell(carry, x_t, p)[0], None), (zeros, zeros), x)
    loss = ng.sum(hT * hT)
    fn = compile([x], [loss] + ng.grad(loss, list(p.values())))
    forward = next(s for s in _scans(fn.opt_graph) if not s.attrs["reverse"])
    body = forward.attrs["body"]
    stored = sorted(body.ys_out, key=lambda y: y.op)
    # the gates i, f, g, o as one [N, 4H] concatenation (z's layout) and c[t-1] (for the
    # forget gate's gradient and c[t] = f c[t-1] + i g); tanh(c[t]) is computed again in
    # the backward, and so is h[t] = o tanh(c[t]): h[t-1] is not stored
    assert [y.op for y in stored] == ["concatenate", "placeholder"]
    assert [y.op for y in stored[0].inputs] == ["sigmoid", "sigmoid", "tanh", "sigmoid"]
    assert stored[0].shape == (ng.Dim("N"), 4 * H) and stored[1].shape == (ng.Dim("N"), H)
    assert stored[1] is body.carry_in[1]
    # the backward returns h[t] per step; a loop in the forward's direction shifts it
    # into h[t-1] (h0 first) for the one product of the recurrent kernel's gradient
    scans = _scans(fn.opt_graph)
    assert sorted(s.attrs["reverse"] for s in scans) == [False, False, True]
    shift = next(s for s in scans if not s.attrs["reverse"] and s is not forward)
    assert [p.shape for p in shift.type.parts] == [(ng.Dim("N"), H), (ng.Dim("T"), ng.Dim("N"), H)]
    gWh = [n for n in fn.opt_graph.nodes() if n.op == "sum" and n.inputs[0].op == "matmul"
           and n.shape == (H, 4 * H)]
    assert len(gWh) == 1 and any(i.op == "scan_output" and i.inputs[0] is shift
                                 for i in gWh[0].inputs[0].inputs[0].inputs)


def _lstm_like(x, h0, W, U, reverse=False):
    (h, c), hs = ng.scan(_lstm_like_step(W, U), (h0, ng.constant(np.full((2, 3), 0.3))), x, reverse=reverse)
    return ng.sum(hs * hs) + ng.sum(c) + ng.sum(h * 0.5)


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_recurrent_kernel_gradient_from_recomputed_h_matches_central_differences(reverse):
    # h[t-1] is not stored: the backward writes h[t], a loop shifts it by one step with
    # the initial h0 first (here a given value, not zeros: its term counts), then one
    # product with the gate gradients; lengths 0 and 1 too (an empty product: zeros)
    for T in (0, 1, 5):
        arrays = [rand((T, 2, 4), 1), rand((2, 3), 2), rand((4, 12), 3) * 0.5, rand((3, 12), 4) * 0.5]
        check_grad(lambda *a: _lstm_like(*a, reverse=reverse), arrays, shapes=[("T", 2, 4), (2, 3), (4, 12), (3, 12)])


def test_lstm_gradient_of_the_recurrent_kernel_gradient_matches_differences():
    U0 = rand((3, 12), 4) * 0.5
    X, H0, V = rand((5, 2, 4), 1), rand((2, 3), 2), rand((3, 12), 5)
    x = ng.placeholder(("T", 2, 4), "float64", name="x")
    h0 = ng.placeholder((2, 3), "float64", name="h0")
    u = ng.placeholder((3, 12), "float64", name="u")
    W = ng.constant(rand((4, 12), 3) * 0.5)
    gU = ng.grad(_lstm_like(x, h0, W, u), u)
    hvp = ng.grad(ng.sum(gU * V), [u, h0])                  # second order, through the shift loop
    fn = compile([x, h0, u], [gU] + hvp)
    eps = 1e-6
    got = fn(X, H0, U0)
    for which, base in ((2, U0), (1, H0)):
        for idx in list(np.ndindex(*base.shape))[::5]:
            d = np.zeros(base.shape)
            d[idx] = eps
            args_p = [X, H0 + d, U0] if which == 1 else [X, H0, U0 + d]
            args_m = [X, H0 - d, U0] if which == 1 else [X, H0, U0 - d]
            num = (np.sum(fn(*args_p)[0] * V) - np.sum(fn(*args_m)[0] * V)) / (2 * eps)
            np.testing.assert_allclose(got[1 if which == 2 else 2][idx], num, rtol=1e-6, atol=1e-9)


def test_grad_text_round_trips_and_the_reparsed_gradient_computes_the_same():
    x = ng.placeholder(("T", 2, 3), "float64", name="x")
    u = ng.placeholder((3, 3), "float64", name="u")
    hT, hs = ng.scan(lambda h, xt: (ng.tanh(xt + h @ u), h), ng.constant(np.zeros((2, 3))), x, reverse=True)
    g = ng.grad(ng.sum(hs) + ng.sum(hT * hT), u)
    graph = ng.Graph([x, u], [g])
    parsed = ng.parse(assert_roundtrip(graph))
    X, U0 = rand((4, 2, 3), 1), rand((3, 3), 2)
    np.testing.assert_allclose(compile(parsed.inputs, parsed.outputs)(X, U0)[0], compile([x, u], g)(X, U0),
                               rtol=1e-12)


def test_an_integer_carry_gets_no_gradient_and_masks_the_float_one():
    def build(x, w):
        def step(c, xt):
            h, t = c
            m = ng.cast(ng.less(t, 3), "float64")          # only the first 3 steps count
            h2 = h + m * ng.sin(xt * w) * h
            return (h2, t + 1), h2 * m
        (h, t), ys = ng.scan(step, (ng.constant(np.ones(3)), ng.constant(np.int32(0))), x)
        return ng.sum(ys) + ng.sum(h * h)
    check_grad(build, [rand((6, 3), 1), rand((3,), 2)], shapes=[("T", 3), (3,)])
