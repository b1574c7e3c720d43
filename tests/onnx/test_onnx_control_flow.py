"""ONNX Scan, Loop and If: imported models (control_flow_models.py) matched against
onnxruntime at two batch sizes from one compile, on the reference and cpu targets;
gradients through the loops and branches by central differences (weights fed as
inputs, so the values a body closes over are differentiated too); what is refused,
by name."""
from __future__ import annotations

import numpy as np
import pytest

import nngraph as ng
from control_flow_models import H, if_model, loop_model, scan_model, weights
from onnx_checks import fd_gradients, matches_onnxruntime, ops_of, ort_run
from nngraph.onnx import OnnxError


def _rng_feeds(shapes: dict, dtype=np.float32, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


# ----------------------------------------------------------------------------- Scan

@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("batch_first,reverse_output", [(True, False), (False, True)])
def test_a_scan_matches_onnxruntime_at_two_batch_sizes(backend, batch_first, reverse_output):
    model = scan_model(np.float32, batch_first, reverse_output)
    x_shape = (lambda n: (n, 4, H)) if batch_first else (lambda n: (4, n, H))
    matches_onnxruntime(model, lambda n: _rng_feeds({"h0": (n, H), "x": x_shape(n)}, seed=n), backend, ["scan"])


def test_one_scan_import_serves_every_sequence_length():
    imported = ng.onnx.load(scan_model(np.float32))
    fn = imported.compile(target="cpu")
    for steps in (1, 7):
        feeds = _rng_feeds({"h0": (2, H), "x": (2, steps, H)}, seed=steps)
        for g, w in zip(fn(feeds["h0"], feeds["x"]), ort_run(scan_model(np.float32), feeds)):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_gradients_through_a_scan_match_central_differences():
    model = scan_model(np.float64, batch_first=False, reverse_output=True, weights_as_inputs=True)
    arrays = dict(_rng_feeds({"h0": (2, H), "x": (3, 2, H)}, np.float64), **weights())
    fd_gradients(model, arrays)


def test_an_opset_8_scan_runs_its_body_per_batch_entry():
    from onnx import helper
    model = scan_model(np.float32)
    feeds = _rng_feeds({"h0": (3, H), "x": (3, 4, H)})
    want = ort_run(model, feeds)
    body = model.graph.node[0].attribute[0].g
    for vi in list(body.input) + list(body.output):  # opset 8's body sees one batch entry
        del vi.type.tensor_type.shape.dim[0]
    node = helper.make_node("Scan", ["", "h0", "x"], ["h", "ys"], body=body, num_scan_inputs=1)
    old = helper.make_model(helper.make_graph([node], "g", list(model.graph.input), list(model.graph.output),
                                              list(model.graph.initializer)),
                            opset_imports=[helper.make_opsetid("", 8)], ir_version=4)
    got = ng.onnx.load(old).compile(target="reference")(feeds["h0"], feeds["x"])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- Loop

@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_a_loop_with_scan_outputs_matches_onnxruntime_as_one_scan(backend):
    model = loop_model(4, np.float32)
    matches_onnxruntime(model, lambda n: _rng_feeds({"h0": (n, H)}, seed=n), backend, ["scan"])


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_a_loop_whose_body_ends_it_early_keeps_the_last_values(backend):
    model = loop_model(6, np.float32, stop_after=2, with_scan_output=False)
    matches_onnxruntime(model, lambda n: _rng_feeds({"h0": (n, H)}, seed=n), backend, ["scan"])


def test_gradients_through_a_loop_match_central_differences():
    model = loop_model(3, np.float64, stop_after=1, with_scan_output=False, weights_as_inputs=True)
    fd_gradients(model, dict(_rng_feeds({"h0": (2, H)}, np.float64), **weights()))
    model = loop_model(3, np.float64, weights_as_inputs=True)
    fd_gradients(model, dict(_rng_feeds({"h0": (2, H)}, np.float64), **weights()))


def test_a_loop_exported_from_pytorch_matches_onnxruntime_at_two_batch_sizes():
    import io
    import warnings

    import torch

    class Repeat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(H, H)

        def forward(self, x):
            h = x
            for _ in range(x.size(1)):  # a Loop whose trip count is a static size of x's shape
                h = torch.tanh(self.lin(h)) + x
            return h

    torch.manual_seed(0)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.jit.script(Repeat()), (torch.randn(2, H),), f, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17)
    import onnx
    model = onnx.load_from_string(f.getvalue())
    assert "Loop" in [n.op_type for n in model.graph.node]
    matches_onnxruntime(model, lambda n: _rng_feeds({"x": (n, H)}, seed=n), "cpu", ["scan"])


def test_a_loop_the_body_ends_early_with_scan_outputs_is_refused_by_name():
    imported_error = None
    try:
        ng.onnx.load(loop_model(4, np.float32, stop_after=2))
    except OnnxError as e:
        imported_error = str(e)
    assert imported_error is not None
    assert "'loop'" in imported_error and "Loop, opset 17" in imported_error and "scan outputs" in imported_error


def test_a_loop_without_a_trip_count_is_refused_by_name():
    model = loop_model(4, np.float32)
    model.graph.node[0].input[0] = ""
    with pytest.raises(OnnxError, match=r"node 'loop' \(Loop, opset 17\): a Loop without a trip count"):
        ng.onnx.load(model)


# ----------------------------------------------------------------------------- If

@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_an_if_with_a_run_time_condition_matches_onnxruntime_on_both_branches(backend):
    model = if_model(np.float32)
    imported = ng.onnx.load(model)
    assert "where" in ops_of(imported)
    fn = imported.compile(target=backend)
    for batch, sign in ((1, 1.0), (4, -1.0), (3, 1.0)):
        x = np.abs(np.random.default_rng(batch).standard_normal((batch, H))).astype(np.float32) * sign
        np.testing.assert_allclose(fn(x)[0], ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_gradients_through_an_if_follow_the_branch_taken():
    model = if_model(np.float64, weights_as_inputs=True)
    for sign in (1.0, -1.0):
        x = sign * (0.5 + np.abs(np.random.default_rng(2).standard_normal((2, H))))
        fd_gradients(model, dict(x=x, **weights()))


def test_an_if_with_a_condition_known_at_import_imports_only_the_branch_taken():
    from onnx import helper, numpy_helper
    model = if_model(np.float32, else_shape=(7,))
    cond = numpy_helper.from_array(np.asarray(True), "c")
    nodes = [n for n in model.graph.node if n.op_type == "If"]
    graph = helper.make_graph(nodes, "g", list(model.graph.input), list(model.graph.output),
                              list(model.graph.initializer) + [cond])
    imported = ng.onnx.load(helper.make_model(graph, opset_imports=list(model.opset_import)))
    assert "where" not in ops_of(imported)
    x = np.ones((2, H), np.float32)
    w = weights(np.float32)
    np.testing.assert_allclose(imported.compile(target="reference")(x)[0], x @ w["W"] + w["b"], rtol=1e-6)


def test_an_if_whose_branches_differ_in_type_is_refused_by_name():
    with pytest.raises(OnnxError, match=r"node 'branch' \(If, opset 17\): output 0: then_branch computes "
                                        r"f32\[N,3\] and else_branch f32\[7\]"):
        ng.onnx.load(if_model(np.float32, else_shape=(7,)))


def test_a_scan_attribute_out_of_range_is_refused_by_name():
    model = scan_model(np.float32)
    for a in model.graph.node[0].attribute:
        if a.name == "scan_input_axes":
            a.ints[0] = 5
    with pytest.raises(OnnxError, match=r"node 'rnn' \(Scan, opset 17\): attribute scan_input_axes=\[5\]"):
        ng.onnx.load(model)


def _unrolled_loop_with_a_body_weight(trips=3):
    """h <- h @ V + v[:i+1].sum(): V is the body's own initializer; the Slice bound i+1
    needs the iteration number at import, so the Loop is unrolled (body imported per trip)."""
    from onnx import TensorProto, helper, numpy_helper
    f64 = TensorProto.DOUBLE
    V = numpy_helper.from_array((0.3 * np.eye(H) + 0.1).astype(np.float64), "V")
    nodes = [helper.make_node("MatMul", ["h_in", "V"], ["hv"]),
             helper.make_node("Add", ["i", "one"], ["end"]),
             helper.make_node("Unsqueeze", ["end", "axes0"], ["ends"]),
             helper.make_node("Slice", ["vec", "starts0", "ends"], ["part"]),
             helper.make_node("ReduceSum", ["part"], ["s"], keepdims=0),
             helper.make_node("Add", ["hv", "s"], ["h_out"]),
             helper.make_node("Identity", ["c_in"], ["c_out"])]
    consts = [numpy_helper.from_array(np.asarray(1, np.int64), "one"),
              numpy_helper.from_array(np.asarray([0], np.int64), "axes0"),
              numpy_helper.from_array(np.asarray([0], np.int64), "starts0")]
    body = helper.make_graph(nodes, "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                             helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                                             helper.make_tensor_value_info("h_in", f64, ["N", H])],
                             [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("h_out", f64, ["N", H])], [V] + consts)
    outer = [numpy_helper.from_array(np.asarray(trips, np.int64), "M"),
             numpy_helper.from_array(np.asarray(True), "cond"),
             numpy_helper.from_array(np.arange(1.0, 6.0), "vec")]
    graph = helper.make_graph([helper.make_node("Loop", ["M", "cond", "h0"], ["h"], body=body)], "g",
                              [helper.make_tensor_value_info("h0", f64, ["N", H])],
                              [helper.make_tensor_value_info("h", f64, ["N", H])], outer)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_unrolled_loop_shares_one_parameter_per_body_weight():
    """Each trip's copy of the body reads the same weight: one trainable parameter, not a
    copy per trip of which only the last is listed."""
    model = _unrolled_loop_with_a_body_weight()
    imported = ng.onnx.load(model)
    body_weights = [p for p in imported.params.values() if p.name == "V"]
    assert len(body_weights) == 1
    assert [p.name for p in ng.Graph(imported.inputs, imported.outputs).params()].count("V") == 1
    h0 = np.random.default_rng(0).standard_normal((2, H))
    got = imported.compile(target="reference")(h0)
    np.testing.assert_allclose(got[0], ort_run(model, {"h0": h0})[0], rtol=1e-12, atol=1e-12)
