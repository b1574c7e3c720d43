"""The shared rules of nngraph/semantics.py against NumPy, and the backends' literals
read from them."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nngraph.semantics import lowest, reduce_identity


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool"])
def test_identities_are_neutral_for_numpy_reductions(dtype):
    x = np.array([3, 0, 1], dtype=dtype)
    assert np.max(x, initial=reduce_identity("max", dtype)) == np.max(x)
    assert np.min(x, initial=reduce_identity("min", dtype)) == np.min(x)
    assert np.sum(x, initial=reduce_identity("sum", dtype), dtype=x.dtype) == np.sum(x, dtype=x.dtype)
    assert reduce_identity("argmax", dtype) == lowest(dtype) == reduce_identity("max", dtype)


def test_identity_values():
    assert reduce_identity("max", "float32") == -math.inf and reduce_identity("min", "float64") == math.inf
    assert reduce_identity("max", "int32") == -2 ** 31 and reduce_identity("min", "int64") == 2 ** 63 - 1
    assert reduce_identity("max", "bool") is False and reduce_identity("min", "bool") is True
    with pytest.raises(ValueError, match="prod"):
        reduce_identity("prod", "float32")


def test_triton_identity_literals_come_from_the_shared_rule():
    from codegen.triton.scalar_ops import identity
    assert identity("max", "float32") == '-float("inf")'
    assert identity("min", "int32") == str(2 ** 31 - 1)
    assert identity("sum", "float64") == "0.0"


def test_op_facts_live_on_the_op():
    from nngraph.node import OPS
    binary = [n for n, op in OPS.items() if op.kind == "elementwise" and op.category is not None]
    assert {"add", "div", "pow", "less", "logical_and"} <= set(binary)
    assert OPS["less"].category == "compare" and OPS["logical_or"].category == "logical"
    assert OPS["neg"].category is None and OPS["where"].category is None
    assert {n for n, op in OPS.items() if op.takes_epilogue} == {"matmul", "conv2d"}
    assert OPS["exp"].cost > OPS["add"].cost > OPS["reshape"].cost == 0


def test_log_sigmoid_has_one_stable_form_at_build_time_and_in_the_pass():
    import nngraph as ng
    from nngraph.graph import Graph
    from nngraph.node import make
    from passes.pipeline import stabilize_pass
    x = ng.placeholder((3,), name="x")
    built = ng.log(ng.sigmoid(x))                                   # canonical at build time
    raw = make("log", (make("sigmoid", (x,), canonical=False),), canonical=False)
    passed = stabilize_pass(Graph([x], [raw])).outputs[0]            # rewritten by the pass
    assert ng.format(Graph([x], [built]), locations=False) == ng.format(Graph([x], [passed]), locations=False)
