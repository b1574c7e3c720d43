"""ng.onnx.export of the remainders (mod, fmod), integer division (trunc_div) and the
bitwise ops: onnxruntime runs the exported model with nngraph's answers, bit for bit, over
the edge cases nngraph/semantics.py settles (signed zeros, infinities, NaN, integer divisors
0 and -1 with INT_MIN, int64 beyond 2**53); the bitwise ops need opset 18 and say so.

onnxruntime 1.32's Where gives +0.0 where it picks a -0.0 from its first branch (a plain
Where of inputs does it), so the sign of a zero is checked against ONNX's reference
evaluator (the standard's semantics) and the values against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

import nngraph as ng
from nngraph.onnx import OnnxError

EDGE_A = [0.0, -0.0, 0.0, -0.0, -3.0, 3.0, -1.0, 1.0, np.inf, -np.inf, 1.0, 1.0, np.nan, 1.0,
          5.5, -5.5, 5.5, -5.5, 1e30, 7.0, -0.0, 4.0]
EDGE_B = [-2.0, 2.0, 2.0, -2.0, np.inf, np.inf, -np.inf, -np.inf, 2.0, 2.0, 0.0, -0.0, 2.0, np.nan,
          2.0, 2.0, -2.0, -2.0, 3.0, 0.1, -np.inf, -2.0]


def _round_trip(fn, *arrays, opset=None):
    """The exported model's outputs on onnxruntime and on ONNX's reference evaluator, and
    the Function's own."""
    model = ng.onnx.export(fn, opset=opset)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(sess.get_inputs(), arrays)}
    want = fn(*arrays)
    return sess.run(None, feeds), ReferenceEvaluator(model).run(None, feeds), want if isinstance(want, list) else [want]


def _same_bits(got, want, zero_signs=True):
    """Equal values and dtypes, NaN where nngraph has NaN, and the sign of every zero."""
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    if want.dtype.kind == "f" and zero_signs:
        np.testing.assert_array_equal(np.signbit(got[want == 0]), np.signbit(want[want == 0]))


def _check(fn, *arrays, opset=None):
    """onnxruntime gives nngraph's values; the reference evaluator its bits, zero signs too."""
    got, spec, want = _round_trip(fn, *arrays, opset=opset)
    for g, r, w in zip(got, spec, want):
        _same_bits(g, w, zero_signs=False)
        _same_bits(r, w)
    return got


def _integer_operands(dtype):
    low = np.iinfo(dtype).min
    big = 2 ** 62 + 7 if dtype == "int64" else 2 ** 30 + 7
    a = np.array([-4, 7, 5, 4, -7, 8, low, low, 5, -5, 0, 13, low, 9, big, -big, big, low + 1], dtype)
    b = np.array([2, -3, 8, -2, 3, 5, -1, 0, 0, -1, -3, -4, 7, -9, 3, 3, -big + 2, -1], dtype)
    return a, b


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_mod_and_fmod_export_with_numpys_edge_cases(dtype):
    a, b = np.array(EDGE_A, dtype), np.array(EDGE_B, dtype)
    x, y = ng.placeholder(a.shape, dtype, name="a"), ng.placeholder(b.shape, dtype, name="b")
    fn = ng.compile([x, y], [ng.mod(x, y), ng.fmod(x, y), x % 0.75], target="reference")
    _check(fn, a, b)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_mod_fmod_and_trunc_div_export_with_divisors_zero_and_minus_one(dtype):
    """onnxruntime's own integer Mod and Div by 0 are undefined (a trap on x86): the export
    keeps its divisors off 0 and -1, as the lowering does."""
    a, b = _integer_operands(dtype)
    x, y = ng.placeholder(a.shape, dtype, name="a"), ng.placeholder(b.shape, dtype, name="b")
    fn = ng.compile([x, y], [ng.mod(x, y), ng.fmod(x, y), ng.trunc_div(x, y), ng.trunc_div(x, -7)],
                    target="reference")
    got = _check(fn, a, b)
    assert got[2][14] == a[14] // 3 and got[2][15] == -(a[14] // 3)


def test_mixed_integer_widths_export_in_the_promoted_dtype():
    a, b = np.array([-9, 9, 2 ** 40 + 1], np.int64), np.array([2, -4, 5], np.int32)
    x, y = ng.placeholder((3,), "int64", name="a"), ng.placeholder((3,), "int32", name="b")
    fn = ng.compile([x, y], [ng.trunc_div(x, y), ng.mod(x, y), ng.bitwise_xor(x, y)], target="reference")
    _check(fn, a, b, opset=18)


@pytest.mark.parametrize("opset", [18, 21])
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_bitwise_ops_export_at_opset_18_and_later(dtype, opset):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    a = rng.integers(info.min, info.max, 16, dtype=dtype, endpoint=True)
    b = rng.integers(info.min, info.max, 16, dtype=dtype, endpoint=True)
    a[:3], b[:3] = [info.min, info.max, -1], [-1, info.min, 0]
    x, y = ng.placeholder(a.shape, dtype, name="a"), ng.placeholder(b.shape, dtype, name="b")
    fn = ng.compile([x, y], [x & y, x | y, x ^ y, ~x, ng.bitwise_and(x, 6)], target="reference")
    got = _check(fn, a, b, opset=opset)
    np.testing.assert_array_equal(got[3], np.invert(a))


@pytest.mark.parametrize("build", [ng.bitwise_and, ng.bitwise_or, ng.bitwise_xor,
                                   lambda x, y: ng.bitwise_not(x)])
def test_bitwise_ops_before_opset_18_are_refused_by_name_and_opset(build):
    x, y = ng.placeholder((3,), "int32", name="a"), ng.placeholder((3,), "int32", name="b")
    out = build(x, y)
    fn = ng.compile([x, y], out, target="reference")
    with pytest.raises(OnnxError, match=rf"{out.op} .*opset >= 18.*opset 17"):
        ng.onnx.export(fn)
