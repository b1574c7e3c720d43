"""Algebraic simplification, one rule at a time, as text: IR in, `simplify`, IR out,
and the same values before and after on random inputs."""
import numpy as np
import pytest

import nngraph as ng
from ir_check import check, ir, run_pass, unchanged
from nngraph.errors import VerifyError
from passes import rewrite
from passes.pipeline import simplify
from passes.rewrites import SIMPLIFY


def test_mul_by_one_on_either_side():
    check(simplify, """
        func @main(%x: f32[4,3]) {
          %0 = constant 1.0 : f32[]
          %1 = mul %x, %0 : f32[4,3]
          %2 = mul %0, %1 : f32[4,3]
          %3 = exp %2 : f32[4,3]
          return %3
        }""", """
        func @main(%x: f32[4,3]) {
          %0 = exp %x : f32[4,3]
          return %0
        }""", fired="mul_by_one")


def test_mul_by_one_that_broadcasts_keeps_a_broadcast():
    check(simplify, """
        func @main(%x: f32[3]) {
          %0 = constant dense<[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]> : f32[2,3]
          %1 = mul %x, %0 : f32[2,3]
          return %1
        }""", """
        func @main(%x: f32[3]) {
          %0 = broadcast_to %x {shape=(2,3)} : f32[2,3]
          return %0
        }""", fired="mul_by_one")


def test_mul_by_one_that_changes_dtype_is_kept():
    unchanged(simplify, """
        func @main(%x: f32[3]) {
          %0 = constant 1.0 : f64[]
          %1 = mul %x, %0 : f64[3]
          return %1
        }""")


def test_add_zero_and_sub_zero():
    check(simplify, """
        func @main(%x: f32[N]) {
          %0 = constant 0.0 : f32[]
          %1 = add %0, %x : f32[N]
          %2 = add %1, %0 : f32[N]
          %3 = sub %2, %0 : f32[N]
          %4 = tanh %3 : f32[N]
          return %4
        }""", """
        func @main(%x: f32[N]) {
          %0 = tanh %x : f32[N]
          return %0
        }""", fired=["add_zero", "sub_zero"])


def test_zero_minus_x_is_neg():
    check(simplify, """
        func @main(%x: f32[N]) {
          %0 = constant 0.0 : f32[]
          %1 = sub %0, %x : f32[N]
          return %1
        }""", """
        func @main(%x: f32[N]) {
          %0 = neg %x : f32[N]
          return %0
        }""", fired="zero_sub")


def test_div_by_one():
    check(simplify, """
        func @main(%x: f32[2]) {
          %0 = constant 1.0 : f32[]
          %1 = div %x, %0 : f32[2]
          return %1
        }""", """
        func @main(%x: f32[2]) {
          return %x
        }""", fired="div_by_one")


def test_mul_by_zero_of_a_value_that_cannot_be_inf_or_nan():
    # a one-hot mask (a cast of a comparison) times zero is zero
    check(simplify, """
        func @main(%y: i32[N], %x: f32[N]) {
          %0 = constant 1 : i32[]
          %1 = equal %y, %0 : bool[N]
          %2 = cast %1 {dtype="float32"} : f32[N]
          %3 = constant 0.0 : f32[]
          %4 = mul %2, %3 : f32[N]
          %5 = add %x, %4 : f32[N]
          return %5
        }""", """
        func @main(%y: i32[N], %x: f32[N]) {
          return %x
        }""", fired=["mul_by_zero", "add_zero"])


def test_mul_by_zero_of_an_unknown_float_is_kept():
    # x could be inf or NaN, and inf * 0 is NaN: the product stays
    text = """
        func @main(%x: f32[N]) {
          %0 = constant 0.0 : f32[]
          %1 = mul %x, %0 : f32[N]
          return %1
        }"""
    unchanged(simplify, text)
    g = ng.parse(ir(text))
    out = simplify(g)
    from nngraph.interpreter import evaluate
    v = evaluate(out.outputs, {g.inputs[0]: np.array([np.inf, 1.0], np.float32)}, {"N": 2})[0]
    assert np.isnan(v[0]) and v[1] == 0


def test_mul_by_minus_one_is_neg_and_double_negation_cancels():
    check(simplify, """
        func @main(%x: f32[N]) {
          %0 = constant -1.0 : f32[]
          %1 = mul %x, %0 : f32[N]
          %2 = neg %1 : f32[N]
          return %2
        }""", """
        func @main(%x: f32[N]) {
          return %x
        }""", fired=["mul_by_minus_one", "neg_neg"])


def test_negation_moves_into_a_constant_factor():
    check(simplify, """
        func @main(%x: f32[N]) {
          %0 = constant 0.25 : f32[]
          %1 = mul %x, %0 : f32[N]
          %2 = neg %1 : f32[N]
          return %2
        }""", """
        func @main(%x: f32[N]) {
          %0 = constant -0.25 : f32[]
          %1 = mul %x, %0 : f32[N]
          return %1
        }""", fired="neg_into_constant")


def test_negations_on_both_sides_of_a_product_cancel():
    check(simplify, """
        func @main(%x: f32[N], %w: f32[N]) {
          %0 = neg %x : f32[N]
          %1 = mul %0, %w : f32[N]
          %2 = neg %1 : f32[N]
          return %2
        }""", """
        func @main(%x: f32[N], %w: f32[N]) {
          %0 = mul %x, %w : f32[N]
          return %0
        }""", fired="neg_of_mul_by_neg")


def test_div_by_a_power_of_two_is_mul_by_its_exact_reciprocal():
    check(simplify, """
        func @main(%x: f32[N]) {
          %0 = constant 4.0 : f32[]
          %1 = div %x, %0 : f32[N]
          return %1
        }""", """
        func @main(%x: f32[N]) {
          %0 = constant 0.25 : f32[]
          %1 = mul %x, %0 : f32[N]
          return %1
        }""", fired="div_by_constant")


def test_div_by_a_constant_whose_reciprocal_is_inexact_is_kept():
    text = """
        func @main(%x: f32[N]) {
          %0 = constant 3.0 : f32[]
          %1 = div %x, %0 : f32[N]
          return %1
        }"""
    unchanged(simplify, text)


def test_div_by_power_of_two_is_bit_exact():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(1000) * 10.0 ** rng.integers(-30, 30, 1000)).astype(np.float32)
    for c in (2.0, 0.5, 1024.0, -8.0):
        np.testing.assert_array_equal(x / np.float32(c), x * np.float32(1 / c))


def test_pow_two_half_and_one():
    check(simplify, """
        func @main(%x: f32[N]) {
          %0 = constant 2.0 : f32[]
          %1 = pow %x, %0 : f32[N]
          %2 = constant 0.5 : f32[]
          %3 = pow %1, %2 : f32[N]
          %4 = constant 1.0 : f32[]
          %5 = pow %3, %4 : f32[N]
          return %5
        }""", """
        func @main(%x: f32[N]) {
          %0 = mul %x, %x : f32[N]
          %1 = sqrt %0 : f32[N]
          return %1
        }""", fired="pow_special")


def test_cast_to_the_same_dtype_is_dropped():
    check(simplify, """
        func @main(%x: f32[N]) {
          %0 = cast %x {dtype="float32"} : f32[N]
          return %0
        }""", """
        func @main(%x: f32[N]) {
          return %x
        }""", fired="cast_same_dtype")


def test_exp_of_log_and_log_of_exp():
    check(simplify, """
        func @main(%x: f32[N], %y: f32[N]) {
          %0 = log %x : f32[N]
          %1 = exp %0 : f32[N]
          %2 = exp %y : f32[N]
          %3 = log %2 : f32[N]
          %4 = add %1, %3 : f32[N]
          return %4
        }""", """
        func @main(%x: f32[N], %y: f32[N]) {
          %0 = add %x, %y : f32[N]
          return %0
        }""", fired=["exp_log", "log_exp"])


def test_where_with_equal_branches_or_a_constant_condition():
    check(simplify, """
        func @main(%c: bool[N], %x: f32[N], %y: f32[N]) {
          %0 = where %c, %x, %x : f32[N]
          %1 = constant true : bool[]
          %2 = where %1, %0, %y : f32[N]
          return %2
        }""", """
        func @main(%c: bool[N], %x: f32[N], %y: f32[N]) {
          return %x
        }""", fired=["where_same_branches", "where_constant_condition"])


def test_transpose_of_transpose():
    check(simplify, """
        func @main(%x: f32[2,3,4]) {
          %0 = transpose %x {perm=(1,2,0)} : f32[3,4,2]
          %1 = transpose %0 {perm=(2,0,1)} : f32[2,3,4]
          %2 = transpose %1 {perm=(0,2,1)} : f32[2,4,3]
          %3 = transpose %2 {perm=(2,0,1)} : f32[3,2,4]
          return %3
        }""", """
        func @main(%x: f32[2,3,4]) {
          %0 = transpose %x {perm=(1,0,2)} : f32[3,2,4]
          return %0
        }""", fired="transpose_of_transpose")


def test_reshape_chain_and_reshape_to_the_same_shape():
    check(simplify, """
        func @main(%x: f32[N,6], %y: f32[N,6]) {
          %0 = reshape %x {shape=(N,2,3)} : f32[N,2,3]
          %1 = reshape %0 {shape=(N,3,2)} : f32[N,3,2]
          %2 = reshape %y {shape=(N,6)} : f32[N,6]
          %3 = reshape %2 {shape=(N,3,2)} : f32[N,3,2]
          %4 = add %1, %3 : f32[N,3,2]
          return %4
        }""", """
        func @main(%x: f32[N,6], %y: f32[N,6]) {
          %0 = reshape %x {shape=(N,3,2)} : f32[N,3,2]
          %1 = reshape %y {shape=(N,3,2)} : f32[N,3,2]
          %2 = add %0, %1 : f32[N,3,2]
          return %2
        }""", fired="reshape_chain")


def test_broadcast_chain_and_broadcast_of_a_reshaped_scalar():
    check(simplify, """
        func @main(%s: f32[], %t: f32[1,1]) {
          %0 = reshape %s {shape=(1,)} : f32[1]
          %1 = broadcast_to %0 {shape=(3,)} : f32[3]
          %2 = broadcast_to %1 {shape=(2,3)} : f32[2,3]
          %3 = broadcast_to %t {shape=(6,1)} : f32[6,1]
          %4 = reshape %3 {shape=(2,3)} : f32[2,3]
          return %2, %4
        }""", """
        func @main(%s: f32[], %t: f32[1,1]) {
          %0 = broadcast_to %s {shape=(2,3)} : f32[2,3]
          %1 = broadcast_to %t {shape=(2,3)} : f32[2,3]
          return %0, %1
        }""", fired=["broadcast_chain", "reshaped_scalar"])


def test_broadcast_of_a_scalar_constant_fed_to_an_elementwise_op_is_the_scalar():
    check(simplify, """
        func @main(%c: bool[N,4], %x: f32[N,4]) {
          %0 = constant 0.0 : f32[]
          %1 = broadcast_to %0 {shape=(N,4)} : f32[N,4]
          %2 = where %c, %x, %1 : f32[N,4]
          return %2
        }""", """
        func @main(%c: bool[N,4], %x: f32[N,4]) {
          %0 = constant 0.0 : f32[]
          %1 = where %c, %x, %0 : f32[N,4]
          return %1
        }""", fired="implicit_broadcast")


def test_a_broadcast_that_sets_the_result_shape_is_kept():
    text = """
        func @main(%x: f32[4]) {
          %0 = constant 2.0 : f32[]
          %1 = broadcast_to %x {shape=(3,4)} : f32[3,4]
          %2 = mul %1, %0 : f32[3,4]
          return %2
        }"""
    unchanged(simplify, text)


def test_unary_op_of_a_broadcast_computes_on_the_small_tensor():
    check(simplify, """
        func @main(%x: f32[4]) {
          %0 = broadcast_to %x {shape=(N,4)} : f32[N,4]
          %1 = exp %0 : f32[N,4]
          return %1
        }""", """
        func @main(%x: f32[4]) {
          %0 = exp %x : f32[4]
          %1 = broadcast_to %0 {shape=(N,4)} : f32[N,4]
          return %1
        }""", fired="unary_through_broadcast")


def test_sum_of_a_broadcast_is_a_product_with_the_count():
    check(simplify, """
        func @main(%x: f32[1,4]) {
          %0 = broadcast_to %x {shape=(5,3,4)} : f32[5,3,4]
          %1 = sum %0 {axes=(0,1), keepdims=false} : f32[4]
          return %1
        }""", """
        func @main(%x: f32[1,4]) {
          %0 = constant 15.0 : f32[]
          %1 = mul %x, %0 : f32[1,4]
          %2 = reshape %1 {shape=(4,)} : f32[4]
          return %2
        }""", fired="sum_of_broadcast")


def test_sum_of_a_broadcast_over_a_symbolic_size_counts_with_numel():
    check(simplify, """
        func @main(%x: f32[]) {
          %0 = broadcast_to %x {shape=(N,2)} : f32[N,2]
          %1 = sum %0 {axes=(0,1), keepdims=true} : f32[1,1]
          return %1
        }""", """
        func @main(%x: f32[]) {
          %0 = numel {dtype="float32", sizes=(N,2)} : f32[]
          %1 = mul %x, %0 : f32[]
          %2 = reshape %1 {shape=(1,1)} : f32[1,1]
          return %2
        }""", fired="sum_of_broadcast", sizes=5)


def test_sum_of_a_broadcast_that_also_stretches_a_kept_axis():
    check(simplify, """
        func @main(%x: f32[1,1]) {
          %0 = broadcast_to %x {shape=(3,4)} : f32[3,4]
          %1 = sum %0 {axes=(0,), keepdims=false} : f32[4]
          return %1
        }""", """
        func @main(%x: f32[1,1]) {
          %0 = constant 3.0 : f32[]
          %1 = mul %x, %0 : f32[1,1]
          %2 = broadcast_to %1 {shape=(1,4)} : f32[1,4]
          %3 = reshape %2 {shape=(4,)} : f32[4]
          return %3
        }""", fired="sum_of_broadcast")


def test_sum_over_an_axis_the_broadcast_did_not_add_is_kept():
    text = """
        func @main(%x: f32[3,4]) {
          %0 = broadcast_to %x {shape=(2,3,4)} : f32[2,3,4]
          %1 = sum %0 {axes=(1,), keepdims=false} : f32[2,4]
          return %1
        }"""
    unchanged(simplify, text)


def test_reduction_over_unit_axes_is_a_reshape():
    check(simplify, """
        func @main(%x: f32[N,1]) {
          %0 = sum %x {axes=(1,), keepdims=false} : f32[N]
          %1 = max %x {axes=(1,), keepdims=true} : f32[N,1]
          return %0, %1
        }""", """
        func @main(%x: f32[N,1]) {
          %0 = reshape %x {shape=(N,)} : f32[N]
          return %0, %x
        }""", fired="reduce_unit_axes")


def test_sum_of_pieces_padded_side_by_side_is_their_concatenation():
    # the gradient of gates sliced out of one product (an LSTM's dz), in any order
    check(simplify, """
        func @main(%a: f32[N,2], %b: f32[N,2], %c: f32[N,2]) {
          %0 = pad %c {pads=((0,0,0),(4,0,0)), value=0.0} : f32[N,6]
          %1 = pad %a {pads=((0,0,0),(0,4,0)), value=0.0} : f32[N,6]
          %2 = add %0, %1 : f32[N,6]
          %3 = pad %b {pads=((0,0,0),(2,2,0)), value=0.0} : f32[N,6]
          %4 = add %2, %3 : f32[N,6]
          return %4
        }""", """
        func @main(%a: f32[N,2], %b: f32[N,2], %c: f32[N,2]) {
          %0 = concatenate %a, %b, %c {axis=1} : f32[N,6]
          return %0
        }""", fired="sum_of_pads")


def test_pieces_that_do_not_cover_the_axis_are_a_padded_concatenation():
    check(simplify, """
        func @main(%a: f32[3,N], %b: f32[2,N]) {
          %0 = pad %a {pads=((1,3,0),(0,0,0)), value=0.0} : f32[7,N]
          %1 = pad %b {pads=((4,1,0),(0,0,0)), value=0.0} : f32[7,N]
          %2 = add %1, %0 : f32[7,N]
          return %2
        }""", """
        func @main(%a: f32[3,N], %b: f32[2,N]) {
          %0 = concatenate %a, %b {axis=0} : f32[5,N]
          %1 = pad %0 {pads=((1,1,0),(0,0,0)), value=0.0} : f32[7,N]
          return %1
        }""", fired="sum_of_pads")


@pytest.mark.parametrize("a_pad, b_pad, fill", [
    ("(0,2,0)", "(1,1,0)", "0.0"),      # b overlaps a
    ("(0,2,0)", "(2,0,0)", "1.0"),      # not a zero pad
])
def test_pads_that_overlap_or_fill_ones_stay_a_sum(a_pad, b_pad, fill):
    unchanged(simplify, f"""
        func @main(%a: f32[N,2], %b: f32[N,2]) {{
          %0 = pad %a {{pads=((0,0,0),{a_pad}), value=0.0}} : f32[N,4]
          %1 = pad %b {{pads=((0,0,0),{b_pad}), value={fill}}} : f32[N,4]
          %2 = add %0, %1 : f32[N,4]
          return %2
        }}""")


def test_pads_with_a_gap_between_them_stay_a_sum():
    unchanged(simplify, """
        func @main(%a: f32[N,2], %b: f32[N,2]) {
          %0 = pad %a {pads=((0,0,0),(0,3,0)), value=0.0} : f32[N,5]
          %1 = pad %b {pads=((0,0,0),(3,0,0)), value=0.0} : f32[N,5]
          %2 = add %0, %1 : f32[N,5]
          return %2
        }""")


def test_every_rule_has_a_docstring_and_is_in_the_list():
    names = {r.__name__ for r in SIMPLIFY}
    assert len(names) == len(SIMPLIFY)
    for r in SIMPLIFY:
        assert r.__doc__, r.__name__


def test_driver_names_a_rule_that_changes_the_type():
    def bad_rule(n):
        return n.inputs[0] if n.op == "sum" else None
    g = ng.parse(ir("""
        func @main(%x: f32[3]) {
          %0 = sum %x {axes=(0,), keepdims=false} : f32[]
          return %0
        }"""))
    with pytest.raises(VerifyError, match="bad_rule"):
        rewrite.rewrite(g, [bad_rule])


def test_rewritten_nodes_keep_the_users_source_location():
    g, out, _ = run_pass(simplify, """
        func @main(%x: f32[N]) {
          %0 = constant 0.25 : f32[]  # model.py:7
          %1 = mul %x, %0 : f32[N]  # model.py:8
          %2 = neg %1 : f32[N]  # model.py:9
          %3 = exp %2 : f32[N]  # model.py:10
          return %3
        }""")
    text = ng.format(out, locations=True)
    assert "mul %x, %0 : f32[N]  # model.py:9" in text
    assert "exp %1 : f32[N]  # model.py:10" in text


def _random_expression(rng, x, y, depth):
    """A random elementwise/movement expression over x, y: [3,4] with the constants the
    rules look for (0, 1, -1, 2, 0.5, 4) mixed in."""
    if depth == 0:
        k = rng.integers(0, 4)
        if k == 0:
            return x
        if k == 1:
            return y
        c = ng.constant(np.float32(rng.choice([0.0, 1.0, -1.0, 2.0, 0.5, 4.0, 3.0])))
        return ng.broadcast_to(c, (3, 4)) if rng.integers(0, 2) else c
    a = _random_expression(rng, x, y, depth - 1)
    b = _random_expression(rng, x, y, depth - 1)
    k = rng.integers(0, 12)
    if k < 5:
        return [ng.add, ng.sub, ng.mul, ng.div, ng.maximum][k](a, b)
    if k == 5:
        return ng.neg(a)
    if k == 6:
        return ng.exp(ng.tanh(a))
    if k == 7:
        return ng.log(ng.abs(a) + 1.0)
    if k == 8:
        return ng.pow(ng.abs(a), ng.constant(np.float32(rng.choice([0.5, 1.0, 2.0]))))
    if k == 9:
        s = ng.broadcast_to(ng.reshape(a, (3, 4, 1)), (3, 4, 2)) if a.ndim == 2 else a
        return ng.sum(s, axis=-1) if a.ndim == 2 else a
    if k == 10:
        return ng.transpose(ng.transpose(ng.broadcast_to(a, (3, 4)))) if a.ndim <= 2 else a
    return ng.where(ng.greater(a, b), a, b)


def test_random_expressions_keep_their_values():
    """Where the original is finite, the simplified graph gives the same finite values."""
    from nngraph.interpreter import evaluate
    from passes.pipeline import optimize
    rng = np.random.default_rng(11)
    x = ng.placeholder((3, 4), name="x")
    y = ng.placeholder((3, 4), name="y")
    X = rng.standard_normal((3, 4)).astype(np.float32)
    Y = rng.uniform(-3, 3, (3, 4)).astype(np.float32)
    fired = 0
    for _ in range(60):
        e = _random_expression(rng, x, y, 3)
        g = ng.Graph([x, y], [e])
        out, log = optimize(g, 2)
        fired += sum(sum(v["rewrites"].values()) for v in log)
        (a,) = evaluate(g.outputs, {x: X, y: Y})
        (b,) = evaluate(out.outputs, {x: X, y: Y})
        ok = np.isfinite(a)
        assert b.shape == a.shape and np.all(np.isfinite(b[ok])), ng.format(g)
        np.testing.assert_allclose(b[ok], a[ok], rtol=1e-5, atol=1e-5, err_msg=ng.format(g))
    assert fired > 50  # the rules were exercised
