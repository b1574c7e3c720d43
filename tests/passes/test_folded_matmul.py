"""A batched product summed over its batch is folded into one GEMM (passes/fusion.py
decides, plan.folded; passes/lower/matmul.py lowers exactly what was decided)."""
import numpy as np

from nngraph.graph import Graph
from passes import fusion
from passes.lower import context
from passes.lowering import to_program
from passes.pipeline import optimize
from passes.program_interpreter import run_program

from test_remat import _elman_step


def _kernels(prog):
    """Every kernel of the Program, loop bodies included."""
    out, todo = [], list(prog.schedule)
    while todo:
        k = todo.pop()
        out.append(k)
        todo += list(getattr(k, "body", []))
    return out


def test_lowering_folds_exactly_the_products_fusion_folded(monkeypatch):
    real, plans = fusion.decide, []
    monkeypatch.setattr(context.fusion, "decide", lambda graph, opt_level=2: plans.append(real(graph, opt_level))
                        or plans[-1])
    inputs, outputs, updates, params, _ = _elman_step(False)
    opt, _ = optimize(Graph(inputs, outputs, list(updates.items())), opt_level=2)
    prog = to_program(opt, 2)
    folded = {k: v for plan in plans for k, v in plan.folded.items()}    # the call's plan and its loops'
    assert folded and all(s.op == "sum" for s in folded.values())
    sources = [k.source for k in _kernels(prog) if "summed by" in (getattr(k, "source", "") or "")]
    assert sorted(sources) == sorted(f"{fusion.label(s.inputs[0])} summed by {fusion.label(s)}"
                                     for s in folded.values())
    X = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    outs, _ = run_program(prog, [X], [p.value for p in opt.params()], {"N": 2, "T": 5})
    assert np.isfinite(outs[0]).all()
