"""softmax's exp(a - log s) as exp(a) * (1 / s) (passes/exp_quotient.py): with
row_reuse after it, one exponential per element and no log in the row's last pass;
what it leaves alone; and softmax (alone and with log_softmax) against NumPy in
float64 from the same float32 differences, on the host's instruction set and on
AVX2 emulated by NNGRAPH_CPU_FEATURES=-avx512f, each in a process of its own."""
from __future__ import annotations

import json

import numpy as np
import pytest

import nngraph as ng
from nngraph.graph import Graph
from passes.exp_quotient import exps_as_quotients
from passes.lowering import to_program
from passes.pipeline import optimize
from passes.program import LoopKernel, Stage, instr
from passes.row_reuse import reuse_row_values

from isa_runs import HOST_AVX512, run_at_isa


def _softmax_kernel(with_log=False):
    x = ng.placeholder(("N", 1000), name="x")
    outs = [ng.softmax(x)] + ([ng.log_softmax(x)] if with_log else [])
    opt, _ = optimize(Graph([x], outs), opt_level=2)
    prog = to_program(opt, 2)
    (k,) = [k for k in prog.schedule if isinstance(k, LoopKernel) and k.outer]
    return prog, k


def _count(stages, op):
    return sum(i.op == op for s in stages for i in s.body)


@pytest.mark.parametrize("with_log", [False, True])
def test_softmax_computes_one_exponential_per_element(with_log):
    prog, k = _softmax_kernel(with_log)
    assert _count(k.stages, "exp") == 2                       # as fused: the sum's and the output's
    _, stages = exps_as_quotients(k.outer, k.stages)
    _, stages = reuse_row_values(prog, k.outer, stages)
    # with log_softmax stored too, the last pass stores two rows, which row_reuse leaves alone
    assert _count(stages, "exp") == (2 if with_log else 1)
    last = stages[-1]
    assert any(i.op == "log" for i in last.body) == with_log         # log_softmax still subtracts log s
    assert any(i.op == "div" for i in last.body)                      # 1 / s, once per row (invariant)


def _stages(summed_op="exp", reduce_kind="sum", minus_max=True):
    """m = max x; s = reduce_kind(summed_op(x - m)); then exp((x - m) - log s), or
    exp(x - log s) without minus_max."""
    head = [instr("idx", dtype="int64", axis=0), instr("idx", dtype="int64", axis=1), instr("load", (0, 1), buffer=0),
            instr("result", slot=0, stage=0), instr("sub", (2, 3))]
    early = Stage((8,), head + [instr(summed_op, (4,))], ((reduce_kind, 5),), [])
    a = 4 if minus_max else 2
    late = Stage((8,), head + [instr("result", slot=0, stage=1), instr("log", (5,)), instr("sub", (a, 6)),
                               instr("exp", (7,))], (("sum", 8),), [])
    return [Stage((8,), head[:3], (("max", 2),), []), early, late]


@pytest.mark.parametrize("case", ["softmax", "s sums tanh", "s is a max", "a is x"])
def test_only_a_sum_of_the_same_exponentials_is_divided_by(case):
    stages = {"softmax": _stages(), "s sums tanh": _stages(summed_op="tanh"),
              "s is a max": _stages(reduce_kind="max"), "a is x": _stages(minus_max=False)}[case]
    _, out = exps_as_quotients((4,), stages)
    assert (not any(i.op == "log" for i in out[2].body)) == (case == "softmax")
    assert out[:2] == stages[:2]


ROWS = r"""
import json
import numpy as np
import nngraph as ng
from codegen.llvm import target

rng = np.random.default_rng(11)
X = (rng.standard_normal((300, 1000)) * 6).astype(np.float32)
X[1, :900] = -150.0                     # terms that underflow to 0, and subnormal ones
X[2, ::3] = -95.0
X[3, 5] = np.nan                        # a NaN row: NaN everywhere
X[4, 9] = np.inf                        # inf - inf: NaN
X[5] = -np.inf                          # -inf - -inf: NaN
x = ng.placeholder(("N", 1000), name="x")
alone = ng.compile([x], ng.softmax(x), target="cpu")(X)
both, logs = ng.compile([x], [ng.softmax(x), ng.log_softmax(x)], target="cpu")(X)
with np.errstate(all="ignore"):
    a = (X - X.max(axis=1, keepdims=True)).astype(np.float64)     # the float32 differences, exactly
    e = np.exp(a)
    want = e / e.sum(axis=1, keepdims=True)
w32 = want.astype(np.float32)
worst = 0.0
for got in (alone, both):
    same = (np.isnan(got) & np.isnan(w32)) | (got == w32)
    err = np.where(same, 0.0, np.abs(got - want) / np.maximum(np.spacing(np.abs(w32)), 2.0 ** -149))
    worst = max(worst, float(np.nan_to_num(err, nan=np.inf).max()))
logs_ok = bool(np.allclose(logs[6:], (a - np.log(e.sum(axis=1, keepdims=True)))[6:], rtol=1e-6, atol=1e-5))
print(json.dumps({"avx512f": target.has_feature("avx512f"), "max_ulp": worst, "logs_ok": logs_ok,
                  "nan_rows": bool(np.isnan(alone[3:6]).all() and np.isnan(both[3:6]).all())}))
"""


@pytest.mark.parametrize("isa", ["host", "avx2"])
def test_softmax_within_10_ulp_of_the_quotient_of_its_float32_differences(isa, tmp_path):
    """exp(a) * (1 / s): the exponential, the float32 sum's rounding (shared by every
    element of the row) and two roundings; exp(a - log s) was 32-35 ulp off here."""
    r = json.loads(run_at_isa(ROWS, isa, tmp_path).strip().splitlines()[-1])
    assert r["avx512f"] == (HOST_AVX512 and isa == "host")
    assert r["max_ulp"] <= 10 and r["logs_ok"] and r["nan_rows"], r


def _cross_entropy_and_grad(x):
    y = ng.placeholder(("N",), "int32", name="y")
    loss = ng.cross_entropy(x, y)
    return [x, y], [loss, *ng.grad(loss, [x])]


@pytest.mark.parametrize("outputs_of", [lambda x: ([x], [ng.softmax(x)]),
                                        lambda x: ([x], [ng.softmax(x), ng.log_softmax(x)]),
                                        _cross_entropy_and_grad], ids=["softmax", "with_log", "cross_entropy"])
def test_the_program_interpreter_computes_the_rewritten_stages_as_the_fused_ones(outputs_of):
    """The stage rewrites the LLVM backend applies (codegen/llvm/kernel.py: exp_quotient,
    exp_sign, row_reuse) checked apart from any machine code: the Program with each
    loop kernel's stages rewritten, run by passes/program_interpreter.py, against
    the Program as fused; NaN, +inf and -inf rows too."""
    from passes.exp_sign import mark_nonpositive_exps
    from passes.program_interpreter import run_program
    x = ng.placeholder(("N", 37), name="x")
    inputs, outs = outputs_of(x)
    prog = to_program(optimize(Graph(inputs, outs), opt_level=2)[0], 2)
    xv = (np.random.default_rng(0).standard_normal((5, 37)) * 6).astype(np.float32)
    xv[1, 3], xv[2, 4], xv[3] = np.nan, np.inf, -np.inf
    feeds = [xv, np.arange(5, dtype=np.int32)][:len(inputs)]
    want = run_program(prog, feeds, [], {"N": 5})[0]
    rewritten = 0
    for k in prog.schedule:
        if isinstance(k, LoopKernel):
            before = [list(s.body) for s in k.stages]
            outer, stages = exps_as_quotients(k.outer, k.stages)
            outer, stages = mark_nonpositive_exps(outer, stages)
            k.outer, k.stages = reuse_row_values(prog, outer, stages)
            rewritten += before != [list(s.body) for s in k.stages]
    assert rewritten
    for w, g in zip(want, run_program(prog, feeds, [], {"N": 5})[0]):
        np.testing.assert_allclose(g, w, rtol=4e-6, atol=1e-7)       # equal_nan: NaN where it was
