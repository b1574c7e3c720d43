"""ONNX ReduceProd, CumProd and TopK (nngraph/onnx/ops_products.py) on the reference and
cpu targets against NumPy and onnxruntime, their gradients, and the refusals."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import nngraph as ng
from nngraph.onnx import OnnxError

ELEM = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE, np.int32: TensorProto.INT32,
        np.int64: TensorProto.INT64}


def _model(op, x_shape, dtype, consts=(), out_shape=(), opset=18, n_out=1, **attrs):
    """y = op(x, *consts): x an input of x_shape, consts initializers named c0, c1...;
    the outputs (values, and indices for n_out=2) of out_shape."""
    names = [f"c{i}" for i in range(len(consts))]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, ["x"] + names, outs, name=op.lower(), **attrs)
    inits = [numpy_helper.from_array(np.asarray(c), n) for c, n in zip(consts, names)]
    out_elems = [ELEM[dtype], TensorProto.INT64][:n_out]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", ELEM[dtype], list(x_shape))],
                              [helper.make_tensor_value_info(o, e, list(out_shape)) for o, e in zip(outs, out_elems)],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _both_targets(model, x):
    m = ng.onnx.load(model)
    return [m.compile(target=t)(x) for t in ("reference", "cpu")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("axes, keep", [([1], 1), ([0, 2], 0), ([], 1), ([-1], 0)])
def test_reduce_prod_matches_numpy(dtype, axes, keep):
    rng = np.random.default_rng(0)
    x = (rng.integers(-3, 4, (3, 7, 5)) if np.issubdtype(dtype, np.integer)
         else rng.uniform(0.5, 1.5, (3, 7, 5)) * rng.choice([-1, 1], (3, 7, 5))).astype(dtype)
    x[1, 2, 3] = 0
    consts = [np.asarray(axes, np.int64)] if axes else []
    want = np.prod(x, axis=tuple(axes) if axes else None, keepdims=bool(keep), dtype=dtype)
    for got in _both_targets(_model("ReduceProd", x.shape, dtype, consts, want.shape, keepdims=keep), x):
        assert got[0].dtype == want.dtype
        np.testing.assert_allclose(got[0], want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_reduce_prod_gradient_is_the_product_of_the_others():
    m = ng.onnx.load(_model("ReduceProd", (4, 6), np.float64, [np.asarray([1], np.int64)], (4,), keepdims=0))
    (x,), (y,) = m.inputs, m.outputs
    xv = np.random.default_rng(1).uniform(0.5, 2.0, (4, 6))
    for target in ("reference", "cpu"):
        (g,) = ng.compile([x], [ng.grad(ng.sum(y), x)], target=target)(xv)
        np.testing.assert_allclose(g, np.prod(xv, 1, keepdims=True) / xv, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_cumprod_matches_numpy(dtype, exclusive, reverse, axis):
    x = np.random.default_rng(2).integers(-3, 4, (5, 11)).astype(dtype)
    a = axis % 2
    y = np.flip(x, a) if reverse else x
    if exclusive:
        y = np.concatenate([np.ones_like(np.take(y, [0], a)), np.take(y, range(y.shape[a] - 1), a)], a)
    want = np.cumprod(y, a)
    want = np.flip(want, a) if reverse else want
    model = _model("CumProd", x.shape, dtype, [np.asarray(axis, np.int64)], x.shape, opset=26, exclusive=exclusive,
                   reverse=reverse)
    for got in _both_targets(model, x):
        np.testing.assert_array_equal(got[0], want)


@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_topk_matches_onnxruntime_with_ties(largest, dtype):
    x = np.random.default_rng(3).integers(-4, 5, (6, 9)).astype(dtype)   # many equal values
    model = _model("TopK", x.shape, dtype, [np.asarray([4], np.int64)], (6, 4), opset=11, n_out=2, axis=1,
                   largest=largest)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for got in _both_targets(model, x):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_topk_gradient_reaches_the_chosen_elements_only():
    m = ng.onnx.load(_model("TopK", (3, 8), np.float64, [np.asarray([2], np.int64)], (3, 2), opset=11, n_out=2))
    (x,), (vals, _) = m.inputs, m.outputs
    xv = np.random.default_rng(4).permutation(24).reshape(3, 8).astype(np.float64)
    (g,) = ng.compile([x], [ng.grad(ng.sum(vals), x)], target="cpu")(xv)
    want = (xv >= np.sort(xv, 1)[:, -2:-1]).astype(np.float64)
    np.testing.assert_array_equal(g, want)


def test_dynamic_axes_and_bad_k_are_refused_by_name():
    with pytest.raises(ng.onnx.OnnxError, match=r"node 'topk' \(TopK, opset 11\): K = 9 must be in \[0, 8\]"):
        ng.onnx.load(_model("TopK", (3, 8), np.float32, [np.asarray([9], np.int64)], (3, 9), opset=11, n_out=2))
    with pytest.raises(ng.onnx.OnnxError, match=r"CumProd needs a static size along axis 0, input has f32\[N"):
        ng.onnx.load(_model("CumProd", ("N", 4), np.float32, [np.asarray(0, np.int64)], ("N", 4), opset=26))
    with pytest.raises(ng.onnx.OnnxError, match=r"ReduceProd needs a static size along axis 0"):
        ng.onnx.load(_model("ReduceProd", ("N", 4), np.float32, [np.asarray([0], np.int64)], (1, 4)))


def _det_model(shape, dtype=np.float64):
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    node = helper.make_node("Det", ["x"], ["y"], name="det")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, list(shape))],
                              [helper.make_tensor_value_info("y", elem, list(shape[:-2]))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_det_matches_numpy(n):
    x = np.random.default_rng(n).standard_normal((3, 2, n, n))
    got = ng.onnx.load(_det_model(x.shape)).compile(target="cpu")(x)[0]
    np.testing.assert_allclose(got, np.linalg.det(x), rtol=1e-12, atol=1e-12)


def test_det_gradient_matches_central_differences():
    from onnx_checks import fd_gradients
    fd_gradients(_det_model((2, 3, 3)), {"x": np.random.default_rng(0).standard_normal((2, 3, 3))})


def test_a_det_too_large_to_expand_is_refused_by_name():
    with pytest.raises(OnnxError, match=r"node 'det' \(Det, opset 22\): 5x5 determinants are not supported"):
        ng.onnx.load(_det_model((5, 5)))
