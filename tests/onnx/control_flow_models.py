"""ONNX models with Scan, Loop and If built with onnx.helper, shared by the control-flow tests.

Every model has a dynamic batch axis "N" and float initializers read inside the body
(closed over by the loop), so that imports are checked at several batch sizes and
differentiated with respect to parameters the loop reads."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

H = 3  # state width


def weights(dtype=np.float64, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {"W": (0.5 * rng.standard_normal((H, H))).astype(dtype), "b": (0.1 * rng.standard_normal(H)).astype(dtype)}


def _elem(dtype) -> int:
    return TensorProto.DOUBLE if np.dtype(dtype) == np.float64 else TensorProto.FLOAT


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, _elem(dtype), shape)


def _model(nodes, inputs, outputs, inits, opset=17, weights_as_inputs=False):
    """weights_as_inputs: W and b become graph inputs (after the others), so that a test
    can differentiate with respect to them as with respect to any input."""
    if weights_as_inputs:
        inputs = inputs + [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(inits[k].dtype),
                                                         list(inits[k].shape)) for k in ("W", "b")]
        inits = {k: v for k, v in inits.items() if k not in ("W", "b")}
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _cell(state, x, out, prefix):
    """out = tanh(state @ W + x + b): nodes of a recurrent step reading W and b from outside."""
    return [helper.make_node("MatMul", [state, "W"], [prefix + "m"]),
            helper.make_node("Add", [prefix + "m", x], [prefix + "a"]),
            helper.make_node("Add", [prefix + "a", "b"], [prefix + "z"]),
            helper.make_node("Tanh", [prefix + "z"], [out])]


def scan_model(dtype=np.float64, batch_first=True, reverse_output=False, opset=17, weights_as_inputs=False):
    """h_t = tanh(h_{t-1} W + x_t + b) over x [N, T, H] (or [T, N, H]); outputs the last
    state [N, H] and every state (stacked on the time axis of the input's layout)."""
    body = helper.make_graph(
        _cell("h_in", "x_t", "h_out", "c_") + [helper.make_node("Identity", ["h_out"], ["y_t"])], "body",
        [_vi("h_in", dtype, ["N", H]), _vi("x_t", dtype, ["N", H])],
        [_vi("h_out", dtype, ["N", H]), _vi("y_t", dtype, ["N", H])])
    axis = 1 if batch_first else 0
    node = helper.make_node("Scan", ["h0", "x"], ["h", "ys"], name="rnn", body=body, num_scan_inputs=1,
                            scan_input_axes=[axis], scan_output_axes=[axis],
                            scan_output_directions=[1 if reverse_output else 0])
    x_shape = ["N", "T", H] if batch_first else ["T", "N", H]
    return _model([node], [_vi("h0", dtype, ["N", H]), _vi("x", dtype, x_shape)],
                  [_vi("h", dtype, ["N", H]), _vi("ys", dtype, x_shape)], weights(dtype), opset, weights_as_inputs)


def loop_model(trips=4, dtype=np.float64, stop_after=None, with_scan_output=True, opset=17,
               weights_as_inputs=False):
    """h_{i+1} = tanh(h_i W + i*0.25 + b) for `trips` iterations (M an initializer);
    stop_after=k makes the body's condition i < k (an early exit computed at run time)."""
    nodes = [helper.make_node("Cast", ["i"], ["i_f"], to=_elem(dtype)),
             helper.make_node("Mul", ["i_f", "quarter"], ["shift"])]
    nodes += _cell("h_in", "shift", "h_out", "c_")
    if stop_after is None:
        nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"]))
    else:
        nodes.append(helper.make_node("Less", ["i", "limit"], ["cond_out"]))
    outs = [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _vi("h_out", dtype, ["N", H])]
    if with_scan_output:
        nodes.append(helper.make_node("ReduceSumSquare", ["h_out"], ["y_i"], keepdims=0, axes=[1]))
        outs.append(_vi("y_i", dtype, ["N"]))
    body = helper.make_graph(nodes, "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                             helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                                             _vi("h_in", dtype, ["N", H])], outs)
    names = ["h"] + (["ys"] if with_scan_output else [])
    node = helper.make_node("Loop", ["M", "", "h0"], names, name="loop", body=body)
    inits = dict(weights(dtype), M=np.asarray(trips, np.int64), quarter=np.asarray(0.25, dtype),
                 limit=np.asarray(stop_after if stop_after is not None else 0, np.int64))
    outputs = [_vi("h", dtype, ["N", H])] + ([_vi("ys", dtype, [trips, "N"])] if with_scan_output else [])
    return _model([node], [_vi("h0", dtype, ["N", H])], outputs, inits, opset, weights_as_inputs)


def if_model(dtype=np.float64, else_shape=None, opset=17, weights_as_inputs=False):
    """y = x W + b if sum(x) > 0 else x * 2 (cond computed at run time)."""
    then = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["xw"]),
                              helper.make_node("Add", ["xw", "b"], ["t"])], "then", [], [_vi("t", dtype, ["N", H])])
    if else_shape is None:
        other = helper.make_graph([helper.make_node("Add", ["x", "x"], ["e"])], "else", [], [_vi("e", dtype, ["N", H])])
    else:
        other = helper.make_graph([helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(
            np.zeros(else_shape, dtype)))], "else", [], [_vi("e", dtype, list(else_shape))])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then, else_branch=other)]
    inits = dict(weights(dtype), zero=np.asarray(0, dtype))
    return _model(nodes, [_vi("x", dtype, ["N", H])], [_vi("y", dtype, ["N", H])], inits, opset, weights_as_inputs)
