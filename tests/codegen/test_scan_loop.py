"""A ScanLoop in native code (codegen/llvm/loop.py: the steps inside the one entry
point) and on target="gpu" (codegen/triton/loop.py: a launch sequence per step,
Triton's interpreter without a GPU): hand-built Programs agree with a NumPy oracle
for lengths 0, 1, 7 and 500 from one compile, forward and reverse, with the input
projection in the loop or hoisted before it, and with check_numerics."""
from __future__ import annotations

import numpy as np
import pytest

from nngraph.errors import NumericsError
from scan_programs import elman, elman_data

LENGTHS = {"cpu": (0, 1, 7, 500), "gpu": (0, 1, 7, 40)}   # the interpreter pays per launch


def _build(backend, prog, check_numerics=False):
    if backend == "cpu":
        from runtime.cpu import build_program
        return build_program(prog, check_numerics=check_numerics)
    from gpu_skip import require_gpu_target
    require_gpu_target()
    from runtime.gpu import build_program
    return build_program(prog, check_numerics=check_numerics)


def _host(a):
    return a if isinstance(a, np.ndarray) else a.detach().cpu().numpy()


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
@pytest.mark.parametrize("hoisted,reverse,closed", [(False, False, False), (True, True, False),
                                                    (False, True, True), (True, False, True)])
def test_scan_program_matches_the_oracle_for_every_length(backend, hoisted, reverse, closed):
    prog, oracle = elman(hoisted=hoisted, reverse=reverse, closed=closed)
    runner, stages = _build(backend, prog)
    for length in LENGTHS[backend]:
        inputs, params = elman_data(length, seed=length)
        outs, _ = runner.run(inputs, params, {"T": length, "N": 3})
        for got, want in zip(outs, oracle(*inputs, *params)):
            got = _host(got)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5, err_msg=f"length {length}")
        np.testing.assert_array_equal(inputs[1], elman_data(length, seed=length)[0][1])  # h0 untouched


def test_cpu_loop_runs_inside_the_entry_point_and_calls_blas_per_step(monkeypatch):
    import codegen.llvm.entry as entry
    monkeypatch.setattr(entry, "ROW_LOOPS", False)   # the per-step loop (by rows: test_scan_rows.py)
    prog, _ = elman()
    runner, stages = _build("cpu", prog)
    assert "k0_k_scan_t_head" in runner.compiled.ir_text      # the step loop is in the entry function
    for kern in ("k0_k_scan_0_k_x_Wx", "k0_k_scan_1_k_h_Wh", "k0_k_scan_2_k_tanh"):   # the body, per step
        assert f'call void @"{kern}"' in runner.compiled.ir_text
    assert runner.compiled.stats["library_calls"] == 2        # x_t @ Wx and h @ Wh, per step


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_check_numerics_sees_a_bad_value_made_inside_the_loop(backend):
    prog, _ = elman()
    runner, _ = _build(backend, prog, check_numerics=True)
    inputs, params = elman_data(5)
    inputs[0][3, 1, 2] = np.nan           # step 3 makes NaN (and carries it on)
    with pytest.raises(NumericsError):
        runner.run(inputs, params, {"T": 5, "N": 3})
