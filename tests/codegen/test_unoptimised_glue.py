"""Glue functions of the native module (codegen/llvm): the BLAS call wrappers, the
thread helper nngraph_parallel and the trampoline nngraph_thread carry optnone, so
LLVM spends no optimisation passes on them; kernels that compute stay optimised."""
import re

import numpy as np

import nngraph as ng


def _attribute_groups(ir_text: str) -> dict:
    return dict(re.findall(r"^attributes (#\d+) = \{(.*)\}$", ir_text, re.M))


def _function_attributes(ir_text: str) -> dict:
    """{function name: its attribute words}, from the optimised IR's define lines."""
    groups = _attribute_groups(ir_text)
    out = {}
    for line in re.findall(r"^define .*$", ir_text, re.M):
        name = re.search(r"@\"?([\w.]+)\"?\(", line).group(1)
        words = set(line.split())
        for g in re.findall(r"#\d+", line):
            words |= set(groups.get(g, "").split())
        out[name] = words
    return out


def test_glue_is_unoptimised_and_kernels_are_not():
    x = ng.placeholder(("N", 300), name="x")
    w = ng.parameter(np.ones((300, 200), np.float32), name="w")
    y = ng.relu(x @ w)
    loss = ng.sum(y * y)
    fn = ng.compile([x], [loss, ng.grad(loss, [w])[0]], target="cpu")
    xs = np.random.default_rng(0).standard_normal((4000, 300)).astype(np.float32)
    got_loss, got_grad = fn(xs)
    h = np.maximum(xs @ np.ones((300, 200), np.float32), 0)
    np.testing.assert_allclose(got_loss, np.sum(h * h), rtol=1e-4)
    np.testing.assert_allclose(got_grad, xs.T @ (2 * h), rtol=1e-4)
    attrs = _function_attributes(fn.dump("llvm"))
    blas = [n for n in attrs if re.search(r"_matmul(_cols)?$", n)]     # a product, or its column parts
    assert blas, sorted(attrs)
    for name in blas + ["nngraph_thread"] + (["nngraph_parallel"] if "nngraph_parallel" in attrs else []):
        assert "optnone" in attrs[name], (name, attrs[name])
    computing = [n for n in attrs if n.startswith("k") and n not in blas]
    assert computing, sorted(attrs)
    for name in computing + ["nngraph_entry"]:
        assert "optnone" not in attrs[name], name
