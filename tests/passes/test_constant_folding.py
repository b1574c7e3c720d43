"""Constant folding, as text: what folds (through the ops' own references) and
what is left computed on purpose (big results, broadcasts, random draws,
non-finite values, symbolic sizes)."""
import numpy as np

from ir_check import check, run_pass, unchanged
from passes.constant_folding import MAX_ELEMENTS, constant_folding


def test_arithmetic_on_constants_folds_with_the_reference_implementation():
    check(constant_folding, """
        func @main(%x: f32[N,2]) {
          %0 = constant dense<[1.0, 2.0]> : f32[2]
          %1 = constant 8.0 : f32[]
          %2 = mul %0, %1 : f32[2]
          %3 = sqrt %2 : f32[2]
          %4 = reshape %3 {shape=(1,2)} : f32[1,2]
          %5 = add %x, %4 : f32[N,2]
          return %5
        }""", """
        func @main(%x: f32[N,2]) {
          %0 = constant dense<[[2.828427, 4.0]]> : f32[1,2]
          %1 = add %x, %0 : f32[N,2]
          return %1
        }""", fired=["fold:mul", "fold:sqrt", "fold:reshape"])


def test_folding_keeps_the_result_dtype():
    check(constant_folding, """
        func @main() {
          %0 = constant 7 : i32[]
          %1 = constant 2 : i32[]
          %2 = div %0, %1 : f32[]
          %3 = constant dense<[3, 1, 2]> : i32[3]
          %4 = max %3 {axes=(0,), keepdims=false} : i32[]
          return %2, %4
        }""", """
        func @main() {
          %0 = constant 3.5 : f32[]
          %1 = constant 3 : i32[]
          return %0, %1
        }""", fired=["fold:div", "fold:max"])


def test_static_index_sources_fold():
    check(constant_folding, """
        func @main() {
          %0 = iota {axis=0, dtype="int32", shape=(4,)} : i32[4]
          %1 = numel {dtype="float32", sizes=(2,3)} : f32[]
          return %0, %1
        }""", """
        func @main() {
          %0 = constant dense<[0, 1, 2, 3]> : i32[4]
          %1 = constant 6.0 : f32[]
          return %0, %1
        }""", fired=["fold:iota", "fold:numel"])


def test_symbolic_sizes_are_not_folded():
    unchanged(constant_folding, """
        func @main(%x: f32[N]) {
          %0 = numel {dtype="float32", sizes=(N,)} : f32[]
          %1 = iota {axis=0, dtype="int32", shape=(N,)} : i32[N]
          %2 = cast %1 {dtype="float32"} : f32[N]
          %3 = div %2, %0 : f32[N]
          %4 = add %x, %3 : f32[N]
          return %4
        }""")


def test_a_broadcast_of_a_scalar_stays_a_broadcast():
    unchanged(constant_folding, """
        func @main() {
          %0 = constant 0.0 : f32[]
          %1 = broadcast_to %0 {shape=(64,64)} : f32[64,64]
          return %1
        }""")


def test_results_over_the_size_bound_stay_computed():
    n = MAX_ELEMENTS + 1
    g, out, counts = run_pass(constant_folding, f"""
        func @main() {{
          %0 = iota {{axis=0, dtype="int32", shape=({n},)}} : i32[{n}]
          %1 = iota {{axis=0, dtype="int32", shape=({MAX_ELEMENTS},)}} : i32[{MAX_ELEMENTS}]
          return %0, %1
        }}""")
    assert out.outputs[0].op == "iota" and out.outputs[1].op == "constant"
    np.testing.assert_array_equal(out.outputs[1].attrs["value"].array, np.arange(MAX_ELEMENTS))


def test_random_draws_are_never_folded():
    unchanged(constant_folding, """
        func @main() {
          %0 = constant 3 : i64[]
          %1 = uniform %0 {seed=5, shape=(4,)} : f32[4]
          return %1
        }""")


def test_a_result_that_is_not_finite_stays_computed():
    # so check_numerics still names the op that made the inf
    unchanged(constant_folding, """
        func @main(%x: f32[2]) {
          %0 = constant 0.0 : f32[]
          %1 = log %0 : f32[]
          %2 = add %x, %1 : f32[2]
          return %2
        }""")


def test_parameters_and_placeholders_are_not_constants():
    unchanged(constant_folding, """
        func @main(%x: f32[2]) state(%w: f32[2]) {
          %0 = constant 2.0 : f32[]
          %1 = mul %w, %0 : f32[2]
          %2 = mul %x, %0 : f32[2]
          return %1, %2
        }""")
