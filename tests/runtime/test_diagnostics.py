"""Diagnostics a user can read: fn.stats()["fusion"] (why a node was kept apart,
with its file:line), fn.profile() (time per kernel in graph terms) and
check_numerics naming the graph op, not the fused kernel, on every target."""
import re

import numpy as np
import pytest

import nngraph as ng
from helpers import small_training_step

TARGETS = ["reference", "cpu", "gpu"]


def _need(backend):
    if backend == "gpu":
        from gpu_skip import require_gpu_target
        require_gpu_target()


@pytest.mark.parametrize("backend", TARGETS)
def test_fusion_reasons_name_the_node_the_reason_and_the_users_line(backend):
    _need(backend)
    fn, _, lines, _ = small_training_step(backend)
    rows = fn.stats()["fusion"]
    assert rows and all({"node", "op", "type", "where", "reason", "kernel"} <= set(r) for r in rows)
    h = [r for r in rows if r["where"] == lines["h"] and r["op"] == "relu"]
    assert h and h[0]["reason"] == "matmul operand"           # relu(x@W+b) feeds the next product
    assert any(r["reason"] == "graph output or parameter update" and r["where"] == lines["loss"] for r in rows)
    assert all(r["where"].startswith("helpers.py:") for r in rows)       # the lines that built them
    text = str(rows)
    assert "matmul operand" in text and lines["h"] in text and text.splitlines()[0].startswith("node")


def test_a_chain_fused_into_one_kernel_lists_only_its_output():
    x = ng.placeholder((5,), name="x")
    y = ng.tanh(ng.exp(x) * 2.0 + 1.0)
    fn = ng.compile([x], y, target="reference")
    rows = fn.stats()["fusion"]
    assert [(r["op"], r["reason"]) for r in rows] == [("tanh", "graph output or parameter update")]


@pytest.mark.parametrize("backend", TARGETS)
def test_profile_is_a_table_of_kernels_in_graph_terms_and_changes_no_parameter(backend):
    _need(backend)
    fn, args, lines, params = small_training_step(backend)
    before = [p.value.copy() for p in params]
    table = fn.profile(*args, calls=3)
    assert isinstance(table, str) and len(table.rows) == fn.stats()["kernels"]
    for p, v in zip(params, before):
        np.testing.assert_array_equal(p.value, v)
    assert sum(r["share"] for r in table.rows) == pytest.approx(1.0)
    assert all(r["seconds"] > 0 and r["bytes"] > 0 for r in table.rows)
    products = [r for r in table.rows if r["kind"] != "loop"]
    assert len(products) == 5                                  # forward 2; backward dV, dh, dW
    assert all(r["flops"] >= 2 * 12 * 8 * 4 and r["GFLOP/s"] > 0 for r in products)
    nodes = [c for r in table.rows for c in r["computes"]]
    assert any(c["op"] == "relu" and c["where"] == lines["h"] for c in nodes)
    assert "share" in table and "GFLOP/s" in table and lines["h"] in table
    assert table.info["sizes"] == {"N": 12} and table.info["calls"] == 3
    if backend == "cpu":                                       # which BLAS ran the products
        from codegen.llvm.blas import describe
        assert fn.stats()["blas"] == table.info["blas"] == describe()
        assert f"\nBLAS: {describe()}\n" in table


def test_profile_without_inputs_reuses_the_last_call_and_says_so_before_one():
    fn, args, _, params = small_training_step("cpu")
    with pytest.raises(ng.InputError, match="give the inputs"):
        fn.profile(calls=1)
    fn(*args)
    after_call = [p.value.copy() for p in params]
    t = fn.profile(calls=2)
    assert t.info["sizes"] == {"N": 12} and fn.last_profile is t
    for p, v in zip(params, after_call):
        np.testing.assert_array_equal(p.value, v)
    with pytest.raises(ValueError, match="calls must be >= 1"):
        fn.profile(calls=0)


def test_profile_counts_product_flops_from_the_bound_sizes():
    from runtime.profiling import kernel_work
    x = ng.placeholder(("N", 6), name="x")
    W = ng.parameter(np.ones((6, 3), np.float32), name="W")
    fn = ng.compile([x], x @ W, target="reference")
    prog = fn.runner.program
    (k,) = prog.schedule
    work = kernel_work(k, prog, {"N": 10})
    assert work["flops"] == 2 * 10 * 3 * 6
    assert work["bytes"] == 4 * (10 * 6 + 6 * 3 + 10 * 3)


@pytest.mark.parametrize("backend", TARGETS)
def test_check_numerics_names_the_graph_op_inside_a_fused_kernel(backend):
    _need(backend)
    x = ng.placeholder((4,), name="x")
    bad = ng.log(x - 2.0)                     # NaN where x < 2, never stored: fused into the output
    out = ng.tanh(bad) * 3.0 + 1.0
    fn = ng.compile([x], out, target=backend, check_numerics=True)
    assert len(fn.stats()["fusion"]) == 1     # only the output is stored
    with pytest.raises(ng.NumericsError) as e:
        fn(np.array([3.0, 1.0, 4.0, 5.0], np.float32))
    msg = str(e.value)
    assert re.match(r"^log made a non-finite value \(NaN\)", msg), msg
    assert bad.where in msg and "from finite inputs" in msg and out.where not in msg
    assert e.value.node.op == "log"


def test_a_reason_says_which_kernel_reads_the_value_and_why_it_could_not_take_it():
    x = ng.placeholder(("N", 6), name="x")
    W = ng.parameter(np.ones((6, 4), np.float32), name="W")
    rows = ng.compile([x], ng.logsumexp(x @ W, axis=1) * 2.0, target="reference").stats()["fusion"]
    (prod,) = [r for r in rows if r["op"] == "matmul"]
    assert prod["reason"].startswith("contraction: materialised; read by k1_")
    assert "epilogue takes only pointwise work" in prod["reason"]
    assert len(prod["read_by"]) == 1 and prod["read_by"][0].startswith("k1_")
    fn, _, lines, _ = small_training_step("reference")
    sums = [r for r in fn.stats()["fusion"] if r["op"] == "sum" and r["where"] == lines["loss"]]
    assert any("which loops over [" in r["reason"] for r in sums), sums
