"""ONNX BatchNormalization with training_mode=1 and Dropout in training mode: the
batch statistics and running-statistics outputs against NumPy (ONNX's reference
formula), gradients by central differences; Dropout's masks from nngraph's
counter-based generator (the same on every target for a seed, fresh on every call),
its output exactly the kept inputs scaled by 1/(1 - ratio), its gradient the mask."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import nngraph as ng
from nngraph.onnx import OnnxError
from onnx_checks import fd_gradients


def _bn_model(dtype=np.float64, momentum=0.8, eps=1e-3, stats_as_inputs=False):
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    rng = np.random.default_rng(0)
    params = {"scale": rng.uniform(0.5, 1.5, 3), "bias": rng.standard_normal(3), "mean": rng.standard_normal(3),
              "var": rng.uniform(0.5, 2.0, 3)}
    params = {k: v.astype(dtype) for k, v in params.items()}
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y", "rm", "rv"],
                            name="bn", training_mode=1, momentum=momentum, epsilon=eps)
    inputs = [helper.make_tensor_value_info("x", elem, ["N", 3, 2, 2])]
    if stats_as_inputs:
        inputs += [helper.make_tensor_value_info(k, elem, [3]) for k in ("scale", "bias")]
    fed = ("scale", "bias") if stats_as_inputs else ()
    inits = [numpy_helper.from_array(v, k) for k, v in params.items() if k not in fed]
    outs = [helper.make_tensor_value_info("y", elem, ["N", 3, 2, 2]), helper.make_tensor_value_info("rm", elem, [3]),
            helper.make_tensor_value_info("rv", elem, [3])]
    graph = helper.make_graph([node], "g", inputs, outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), params


def _bn_reference(x, p, momentum, eps):
    """ONNX's reference (onnx/backend/test/case/node/batchnorm.py, training mode)."""
    axes = (0, 2, 3)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    shape = (1, -1, 1, 1)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * p["scale"].reshape(shape) \
        + p["bias"].reshape(shape)
    return y, p["mean"] * momentum + mean * (1 - momentum), p["var"] * momentum + var * (1 - momentum)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_training_mode_batch_norm_matches_the_onnx_formula_at_two_batch_sizes(backend):
    model, params = _bn_model(np.float32)
    fn = ng.onnx.load(model).compile(target=backend)
    for batch in (2, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 2, 2)).astype(np.float32)
        for got, want in zip(fn(x), _bn_reference(x, params, 0.8, 1e-3)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_training_mode_batch_norm_gradients_match_central_differences():
    model, params = _bn_model(np.float64, stats_as_inputs=True)
    x = np.random.default_rng(4).standard_normal((2, 3, 2, 2))
    fd_gradients(model, {"x": x, "scale": params["scale"], "bias": params["bias"]})


def test_the_training_outputs_of_opsets_9_to_13_are_refused_by_name():
    model, _ = _bn_model(np.float32)
    model.opset_import[0].version = 13
    node = model.graph.node[0]
    del node.attribute[:]
    node.output.extend(["saved_mean", "saved_var"])
    with pytest.raises(OnnxError, match=r"node 'bn' \(BatchNormalization, opset 13\): outputs running_mean"):
        ng.onnx.load(model)


def _dropout_model(ratio=0.25, seed=7, shape=(50, 400)):
    node = helper.make_node("Dropout", ["x", "ratio", "training"], ["y", "mask"], name="drop", seed=seed)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", shape[1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", shape[1]]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", shape[1]])],
        [numpy_helper.from_array(np.asarray(ratio, np.float32), "ratio"),
         numpy_helper.from_array(np.asarray(True), "training")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_training_mode_dropout_keeps_one_minus_ratio_and_scales_what_it_keeps():
    imported = ng.onnx.load(_dropout_model(0.25))
    fn = imported.compile(target="cpu")
    x = np.random.default_rng(0).standard_normal((50, 400)).astype(np.float32)
    y, mask = fn(x)
    assert mask.dtype == np.bool_ and abs(mask.mean() - 0.75) < 0.02  # 20,000 draws: 0.003 standard deviation
    np.testing.assert_allclose(y, np.where(mask, x / np.float32(0.75), 0), rtol=1e-6)
    _, again = fn(x)
    assert (again != mask).any()  # a fresh mask on every call


def test_training_mode_dropout_draws_the_same_masks_on_every_target_for_a_seed():
    from nngraph.ops.random import step_counter
    x = np.ones((8, 400), np.float32)

    def first_mask(seed, target):
        fn = ng.onnx.load(_dropout_model(0.5, seed=seed)).compile(target=target)
        step_counter().value = np.zeros((), np.int64)  # the process-wide call counter keys the draws too
        return fn(x)[1]

    masks = [first_mask(11, t) for t in ("reference", "cpu")]
    np.testing.assert_array_equal(masks[0], masks[1])
    other = first_mask(12, "reference")
    assert (other != masks[0]).any()


def test_training_mode_dropout_gradient_is_the_scaled_mask():
    imported = ng.onnx.load(_dropout_model(0.25))
    (x,), (y, mask) = imported.inputs, imported.outputs
    r = ng.placeholder(y.shape, "float32", name="r")
    (g,) = ng.grad(ng.sum(y * r), [x])
    fn = ng.compile([x, r], [mask, g], target="cpu")
    xs = np.random.default_rng(1).standard_normal((6, 400)).astype(np.float32)
    rs = np.random.default_rng(2).standard_normal((6, 400)).astype(np.float32)
    m, grad = fn(xs, rs)
    np.testing.assert_allclose(grad, np.where(m, rs / np.float32(0.75), 0), rtol=1e-6)


def test_training_mode_dropout_with_a_ratio_of_one_is_refused_by_name():
    with pytest.raises(OnnxError, match=r"node 'drop' \(Dropout, opset 13\): ratio=1.0 is not supported"):
        ng.onnx.load(_dropout_model(1.0))


def test_an_inference_dropout_with_a_ratio_computed_at_run_time_is_the_identity():
    """In inference the ratio is not used, so it need not be known at import."""
    graph = helper.make_graph([helper.make_node("Dropout", ["x", "r"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
                               helper.make_tensor_value_info("r", TensorProto.FLOAT, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = ng.onnx.load(model).compile(target="reference")(x, np.float32(0.3))
    np.testing.assert_array_equal(got[0], x)
