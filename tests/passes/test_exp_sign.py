"""exp of a row's value minus the row's maximum is marked nonpositive
(passes/exp_sign.py): which exps the rewrite marks and which it leaves alone, and
the marked exp's values (subnormal and zero results, infinities and NaN in a row)
against NumPy in float64, on the host's instruction set and on AVX2 emulated by
NNGRAPH_CPU_FEATURES=-avx512f (there the marked exp scales by one shift and two
multiplies instead of two built powers of two), each in a process of its own."""
from __future__ import annotations

import json

import pytest

import nngraph as ng
from nngraph.graph import Graph
from passes.exp_sign import NONPOSITIVE, mark_nonpositive_exps
from passes.lowering import to_program
from passes.pipeline import optimize
from passes.program import LoopKernel, Stage, Store, instr

from isa_runs import HOST_AVX512, run_at_isa


def _row_kernel(outputs_of):
    z = ng.placeholder(("N", 1000), name="z")
    y = ng.placeholder(("N",), "int32", name="y")
    g = Graph([z, y], outputs_of(z, y))
    opt, _ = optimize(g, opt_level=2)
    prog = to_program(opt, 2)
    (k,) = [k for k in prog.schedule if isinstance(k, LoopKernel) and k.outer]
    return k


def _cross_entropy_and_grad(z, y):
    loss = ng.cross_entropy(z, y)
    return [loss, *ng.grad(loss, [z])]


def _marks(stages):
    return [bool(i.attr(NONPOSITIVE)) for s in stages for i in s.body if i.op == "exp"]


def test_both_exps_of_cross_entropy_and_its_gradient_are_marked():
    k = _row_kernel(_cross_entropy_and_grad)
    assert _marks(k.stages) == [False, False]                 # as lowered
    _, stages = mark_nonpositive_exps(k.outer, k.stages)
    assert _marks(stages) == [True, True]


def _stages(late_body, early_reduce="max", store_between=False):
    """Stage 0 reduces x[i, j] (buffer 0); stage 1 computes late_body's exp; with
    store_between, stage 1 also stores into buffer 0."""
    early = Stage((8,), [instr("idx", dtype="int64", axis=0), instr("idx", dtype="int64", axis=1),
                         instr("load", (0, 1), buffer=0)], ((early_reduce, 2),), [])
    stores = [Store(0, (0, 1), len(late_body) - 1)] if store_between else []
    return [early, Stage((8,), late_body, (("sum", len(late_body) - 1),), stores)]


def _late(buffer=0, swap=False):
    """exp(x[i, j] - m), or exp(m - x[i, j]) with swap, x read from `buffer`."""
    load, res = instr("load", (0, 1), buffer=buffer), instr("result", slot=0, stage=0)
    sub = instr("sub", (3, 2)) if swap else instr("sub", (2, 3))
    return [instr("idx", dtype="int64", axis=0), instr("idx", dtype="int64", axis=1), load, res, sub,
            instr("exp", (4,))]


@pytest.mark.parametrize("case", ["x - max x", "max x - x", "y - max x", "x - min x", "x stored between"])
def test_only_a_value_minus_its_own_row_maximum_is_marked(case):
    stages = {"x - max x": _stages(_late()), "max x - x": _stages(_late(swap=True)),
              "y - max x": _stages(_late(buffer=1)), "x - min x": _stages(_late(), early_reduce="min"),
              "x stored between": _stages(_late(), store_between=True)}[case]
    _, marked = mark_nonpositive_exps((4,), stages)
    assert _marks(marked) == [case == "x - max x"]


ROWS = r"""
import json, sys
import numpy as np
import nngraph as ng
from codegen.llvm import target

f32 = np.float32
tiny = float(np.finfo(f32).smallest_subnormal)
# every 4096th nonpositive float32 (all exponents, subnormals), dense edges where exp
# turns subnormal and then 0, and the values near 0; each row's maximum is 0, so
# z - max z is z exactly
every = np.arange(2 ** 31, 2 ** 32, 2 ** 12, dtype=np.uint64).astype(np.uint32).view(f32)
edges = np.concatenate([np.linspace(-105, -86, 40000), np.linspace(-1, 0, 4000)]).astype(f32)
x = np.concatenate([every, edges, f32([-np.inf, -0.0])])
x = np.concatenate([x, np.full(-len(x) % 999, -1.0, f32)]).reshape(-1, 999)
rows = np.concatenate([np.zeros((len(x), 1), f32), x], axis=1)
special = np.array([[0.0, -np.inf, 1.0, 2.0] + [0.0] * 996,           # a finite row
                    [np.inf, 1.0, np.inf, -np.inf] + [0.0] * 996,     # inf - inf: NaN; 1 - inf: -inf
                    [np.nan, 1.0, 0.0, -1.0] + [0.0] * 996,           # a NaN row: NaN everywhere
                    [-np.inf] * 1000], f32)                           # -inf - -inf: NaN
z = ng.placeholder(("N", 1000), name="z")
fn = ng.compile([z], ng.exp(z - ng.max(z, axis=1, keepdims=True)), target="cpu")
got = fn(np.concatenate([rows, special]))
with np.errstate(all="ignore"):
    zz = np.concatenate([rows, special]).astype(np.float64)
    want = np.exp(zz - zz.max(axis=1, keepdims=True))
w = want.astype(f32)
spacing = np.maximum(np.spacing(np.abs(w)).astype(np.float64), tiny)
same = (np.isnan(got) & np.isnan(w)) | (got == w)
err = np.where(same, 0.0, np.abs(got.astype(np.float64) - want) / spacing)
err = np.nan_to_num(err, nan=np.inf)
k = np.unravel_index(int(np.argmax(err)), err.shape)
print(json.dumps({"avx512f": target.has_feature("avx512f"), "max_ulp": float(err.max()),
                  "at": float(zz[k]), "got": float(got[k]), "want": float(want[k]),
                  "special_same": bool(same[-4:].all()), "nonpositive": "vpsrad" not in fn.dump("asm")}))
"""


@pytest.mark.parametrize("isa", ["host", "avx2"])
def test_marked_exp_within_3_ulp_and_exact_at_special_values(isa, tmp_path):
    r = json.loads(run_at_isa(ROWS, isa, tmp_path).strip().splitlines()[-1])
    assert r["avx512f"] == (HOST_AVX512 and isa == "host")
    assert r["max_ulp"] <= 3, r
    assert r["special_same"], r
    if not r["avx512f"]:      # the marked exp's scaling: no halving of n (mathfns.FloatMath._scale)
        assert r["nonpositive"], r
