"""Checks shared by the ONNX operator tests: onnxruntime's answer for a model, the
ops of an import, a model run at two batch sizes, and the gradients of an imported
model against central differences."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

import nngraph as ng


def ort_run(model, feeds: dict) -> list:
    """onnxruntime's outputs (CPU provider)."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def ops_of(imported) -> list:
    """The nngraph ops an import built."""
    return [n.op for n in ng.Graph(imported.inputs, imported.outputs).nodes()]


def matches_onnxruntime(model, make_feeds, backend, ops=(), rtol=1e-5, atol=1e-6):
    """One import and compile, matched against onnxruntime at batch sizes 1 and 5
    (`make_feeds(batch)` gives the inputs by name); the import must use `ops`."""
    imported = ng.onnx.load(model)
    assert set(ops) <= set(ops_of(imported))
    fn = imported.compile(target=backend)
    for batch in (1, 5):
        feeds = make_feeds(batch)
        got = fn(*[feeds[n] for n in imported.input_names])
        for g, w in zip(got, ort_run(model, feeds)):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def fd_gradients(model, arrays: dict, eps=1e-6):
    """ng.grad of sum(output_k * r_k) over every input against central differences (float64)."""
    imported = ng.onnx.load(model)
    ins = imported.inputs
    rng = np.random.default_rng(3)
    rs = [ng.placeholder(o.shape, o.dtype, name=f"r{k}") for k, o in enumerate(imported.outputs)]
    cost = ng.sum(imported.outputs[0] * rs[0])
    for o, r in zip(imported.outputs[1:], rs[1:]):
        cost = cost + ng.sum(o * r)
    fn = ng.compile(ins + rs, [cost] + list(ng.grad(cost, ins)), target="reference")
    vals = [np.asarray(arrays[n], np.float64) for n in imported.input_names]
    outs = ng.compile(ins, imported.outputs, target="reference")(*vals)
    r_vals = [rng.uniform(0.5, 1.5, np.shape(o)) for o in outs]
    analytic = fn(*vals, *r_vals)[1:]
    for i, (a, g) in enumerate(zip(vals, analytic)):
        num = np.zeros_like(a)
        for j in range(a.size):
            step = np.zeros(a.size)
            step[j] = eps
            up = [v if k != i else a + step.reshape(a.shape) for k, v in enumerate(vals)]
            down = [v if k != i else a - step.reshape(a.shape) for k, v in enumerate(vals)]
            num.reshape(-1)[j] = (fn(*up, *r_vals)[0] - fn(*down, *r_vals)[0]) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8, err_msg=f"gradient of {imported.input_names[i]}")
