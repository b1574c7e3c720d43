"""DCE, stop_gradient removal and CSE, as text; and CSE on a real training step."""
import numpy as np

import nngraph as ng
from ir_check import check, ir, run_pass, unchanged
from nngraph.compiler import build_graph
from passes.cse import cse, cse_key
from passes.dce import dce, drop_stop_gradient
from passes.pipeline import optimize


def test_dce_keeps_unused_inputs_and_state_identity():
    g, out, _ = run_pass(dce, """
        func @main(%x: f32[N], %unused: f32[3]) state(%w: f32[2]) {
          %0 = mul %x, %x : f32[N]
          update %w <- %w
          return %0
        }""")
    assert out.inputs[0] is g.inputs[0] and out.inputs[1] is g.inputs[1]
    assert out.updates[0][0] is g.updates[0][0] and out.updates[0][1] is g.updates[0][0]
    assert ng.format(out) == ng.format(g)


def test_dce_drops_what_no_root_reaches():
    g = ng.parse(ir("""
        func @main(%x: f32[N]) {
          %0 = exp %x : f32[N]
          %1 = log %x : f32[N]
          return %0
        }"""))
    assert "log" not in ng.format(dce(g))


def test_stop_gradient_is_dropped_after_autodiff():
    check(drop_stop_gradient, """
        func @main(%x: f32[N,3]) {
          %0 = max %x {axes=(1,), keepdims=true} : f32[N,1]
          %1 = stop_gradient %0 : f32[N,1]
          %2 = sub %x, %1 : f32[N,3]
          return %2
        }""", """
        func @main(%x: f32[N,3]) {
          %0 = max %x {axes=(1,), keepdims=true} : f32[N,1]
          %1 = sub %x, %0 : f32[N,3]
          return %1
        }""", fired="stop_gradient")


def test_cse_merges_equal_constants_by_value():
    check(cse, """
        func @main(%x: f32[N]) {
          %0 = constant 0.5 : f32[]
          %1 = mul %x, %0 : f32[N]
          %2 = constant 0.5 : f32[]
          %3 = add %1, %2 : f32[N]
          %4 = constant dense<[1.0, 2.0]> : f32[2]
          %5 = constant dense<[1.0, 2.0]> : f32[2]
          %6 = constant 0.5 : f64[]
          return %3, %4, %5, %6
        }""", """
        func @main(%x: f32[N]) {
          %0 = constant 0.5 : f32[]
          %1 = mul %x, %0 : f32[N]
          %2 = add %1, %0 : f32[N]
          %3 = constant dense<[1.0, 2.0]> : f32[2]
          %4 = constant 0.5 : f64[]
          return %2, %3, %3, %4
        }""", fired="merge:constant")


def test_cse_merges_equal_computations_and_commuted_operands():
    check(cse, """
        func @main(%x: f32[N], %y: f32[N]) {
          %0 = mul %x, %y : f32[N]
          %1 = tanh %0 : f32[N]
          %2 = mul %y, %x : f32[N]
          %3 = tanh %2 : f32[N]
          %4 = sub %1, %3 : f32[N]
          %5 = sub %3, %1 : f32[N]
          return %4, %5
        }""", """
        func @main(%x: f32[N], %y: f32[N]) {
          %0 = mul %x, %y : f32[N]
          %1 = tanh %0 : f32[N]
          %2 = sub %1, %1 : f32[N]
          return %2, %2
        }""", fired=["merge:mul", "merge:tanh", "merge:sub"])


def test_cse_keeps_non_commutative_operand_order_and_different_attributes():
    unchanged(cse, """
        func @main(%x: f32[N,3], %y: f32[N,3]) {
          %0 = sub %x, %y : f32[N,3]
          %1 = sub %y, %x : f32[N,3]
          %2 = sum %0 {axes=(1,), keepdims=true} : f32[N,1]
          %3 = sum %0 {axes=(1,), keepdims=false} : f32[N]
          return %1, %2, %3
        }""")


def test_cse_keeps_placeholders_parameters_and_random_draws_apart():
    g, out, counts = run_pass(cse, """
        func @main(%a: f32[3], %b: f32[3]) state(%p: f32[3], %q: f32[3], %c: i64[] {trainable=false}) {
          %0 = uniform %c {seed=1, shape=(3,)} : f32[3]
          %1 = uniform %c {seed=1, shape=(3,)} : f32[3]
          %2 = add %a, %b : f32[3]
          %3 = add %p, %q : f32[3]
          return %0, %1, %2, %3
        }""")
    assert not +counts
    assert len({id(o) for o in out.outputs}) == 4


def _mlp(sizes=(784, 512, 256, 10), seed=0):
    rng = np.random.default_rng(seed)
    x = ng.placeholder(("N", sizes[0]), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    h, params = x, []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = ng.parameter((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), name=f"W{i}")
        c = ng.parameter(np.full(b, 0.01, np.float32), name=f"b{i}")
        params += [W, c]
        h = h @ W + c
        if i < len(sizes) - 2:
            h = ng.relu(h)
    loss = ng.cross_entropy(h, y)
    grads = ng.grad(loss, params)
    return build_graph([x, y], loss, {p: p - 0.1 * gp for p, gp in zip(params, grads)})[0]


def test_after_the_pipeline_the_mlp_step_computes_each_value_once():
    opt, _ = optimize(_mlp(), 2)
    nodes = opt.nodes()
    keys = [cse_key(n, n.inputs) for n in nodes]
    keys = [k for k in keys if k is not None]
    assert len(keys) == len(set(keys)), "two nodes compute the same value"
    # 3 forward products, 3 weight gradients, 2 input gradients: nothing recomputed
    assert sum(n.op == "matmul" for n in nodes) == 8
    assert sum(n.op == "exp" for n in nodes) == 1
    assert sum(n.op == "stop_gradient" for n in nodes) == 0


def test_cse_merges_a_gradient_that_rebuilds_forward_values():
    # the vjp of max rebuilds the comparison of x with the broadcast max; built twice
    # by the user, the whole forward and gradient appear twice before CSE
    x = ng.placeholder(("N", 5), name="x")
    a = ng.sum(ng.max(x, axis=1) * 2.0)
    b = ng.sum(ng.max(x, axis=1) * 2.0)
    g, _ = build_graph([x], [a + b, ng.grad(a + b, x)])
    before = len(g.nodes())
    out = cse(g)
    assert len(out.nodes()) < before
    assert sum(n.op == "max" for n in out.nodes()) == 1
