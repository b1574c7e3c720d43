"""How many threads one BLAS call of the generated code uses (codegen/llvm/blas.py
call_threads, from codegen/tuning.py blas_call_threads): one where nngraph's worker
pool splits the products, so that a BLAS's own workers never wait on the pool's cores;
the rule's decisions with made-up settings, and right answers under each setting in
a fresh process (the BLAS and the thresholds are read once per process)."""
import dataclasses
import json
import os

import pytest
from blas_scripts import NO_MKL_WHEEL, installed_blas, run

from codegen import tuning as tuning_module
from codegen.llvm import blas, mkl


def _with_call_threads(monkeypatch, n: int) -> None:
    real = tuning_module.tuning()
    monkeypatch.setattr(tuning_module, "tuning", lambda: dataclasses.replace(real, blas_call_threads=n))


@pytest.mark.parametrize("rule", [1, 2])
def test_openblas_follows_the_hosts_rule(monkeypatch, rule):
    _with_call_threads(monkeypatch, rule)
    assert blas.call_threads("openblas") == rule


@pytest.mark.parametrize("layer, rule", [("sequential", 2), ("sequential", 1), ("gnu", 1), ("intel", 1)])
def test_mkl_calls_follow_its_threading_layer(monkeypatch, layer, rule):
    """The sequential layer keeps each call on its thread whatever the rule; a threaded
    layer (NNGRAPH_MKL_THREADING: the user asked for MKL's own threads) gets the
    configured count."""
    _with_call_threads(monkeypatch, rule)
    monkeypatch.setenv("NNGRAPH_MKL_THREADING", layer)
    assert blas.call_threads("mkl") == (1 if layer == "sequential" else blas.configured_threads())


def test_the_choice_times_one_thread_calls_as_parts_of_our_split(monkeypatch):
    """Candidates whose calls run on one thread are timed as one part of our split
    (blas_choice.time_candidates), OpenBLAS too where the rule says one per call; the
    threads per call are part of the choice's key."""
    seen = {}

    def choose(candidates, installed, key_parts, threads, one_thread=frozenset()):
        seen.update(one_thread=one_thread, key=key_parts)
        return "openblas", None
    from codegen.llvm import blas_choice
    monkeypatch.setattr(blas_choice, "choose", choose)
    monkeypatch.delenv("NNGRAPH_MKL_THREADING", raising=False)
    keys = []
    try:
        for rule in (1, 2):
            _with_call_threads(monkeypatch, rule)
            blas._choice.cache_clear()
            assert blas.chosen_blas() == "openblas"
            assert seen["one_thread"] == ({"openblas", "mkl"} if rule == 1 else {"mkl"})
            keys.append(seen["key"])
    finally:
        blas._choice.cache_clear()
    assert keys[0] != keys[1]


def test_describe_says_how_a_call_is_threaded():
    assert blas._description("openblas", 2, 1).endswith(", 1 thread per call: products split by nngraph's threads)")
    assert blas._description("openblas", 2, 2).endswith(", 2 threads)")
    assert blas._description("openblas", 1, 1).endswith(", 1 thread)")


# a training step whose products are above the work that pays for a hand-off to our
# threads (tuning.own_split_work) and below the one that wakes a BLAS thread, checked
# against target="reference" over two steps; then what the process decided
STEP = """
    import json
    import numpy as np
    import nngraph as ng
    from codegen.llvm import blas, entry
    from codegen.host import host_facts
    from codegen.tuning import tuning

    def step(target):
        rng = np.random.default_rng(0)
        x = ng.placeholder(("N", 300), name="x")
        y = ng.placeholder(("N",), "int32", name="y")
        W0 = ng.parameter((rng.standard_normal((300, 200)) * 0.05).astype(np.float32), name="W0")
        W1 = ng.parameter((rng.standard_normal((200, 10)) * 0.05).astype(np.float32), name="W1")
        loss = ng.cross_entropy(ng.relu(x @ W0) @ W1, y)
        g0, g1 = ng.grad(loss, [W0, W1])
        return ng.compile([x, y], loss, updates={W0: W0 - 0.1 * g0, W1: W1 - 0.1 * g1}, target=target), W0
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((96, 300)).astype(np.float32), rng.integers(0, 10, 96).astype(np.int32)
    (cpu, w_cpu), (ref, w_ref) = step("cpu"), step("reference")
    for _ in range(2):
        np.testing.assert_allclose(cpu(X, Y), ref(X, Y), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w_cpu.value, w_ref.value, rtol=1e-4, atol=1e-5)
    t = tuning()
    print(json.dumps({"blas": blas.chosen_blas(), "per_call": blas.threads_per_call(), "rule": t.blas_call_threads,
                      "loops": t.loop_threads, "instance": blas.configured_threads(), "gemm_work": entry.gemm_work(),
                      "own": t.own_split_work, "describe": blas.describe(), "split_ns": t.split_ns,
                      "start_ns": host_facts().thread_start_ns}))
"""
SETTINGS = {
    "openblas": ({"NNGRAPH_BLAS": "openblas"}, ""),
    "openblas, 2 BLAS threads asked": ({"NNGRAPH_BLAS": "openblas", "NNGRAPH_BLAS_THREADS": "2"}, ""),
    "openblas, no pool": ({"NNGRAPH_BLAS": "openblas", "NNGRAPH_THREAD_POOL": "0"}, ""),
    "openblas, one loop thread": ({"NNGRAPH_BLAS": "openblas", "NNGRAPH_NUM_THREADS": "1"}, ""),
    "no mkl wheel": ({}, NO_MKL_WHEEL),
    "mkl": ({"NNGRAPH_BLAS": "mkl"}, ""),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_right_answers_and_the_rule_under_each_setting(tmp_path, setting):
    env_extra, prefix = SETTINGS[setting]
    if env_extra.get("NNGRAPH_BLAS") == "mkl" and "mkl" not in installed_blas():
        pytest.skip("the mkl wheel is not installed here (CI installs it)")
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("NNGRAPH_BLAS", "NNGRAPH_THREAD_POOL", "NNGRAPH_NUM_THREADS", "NNGRAPH_MKL"))}
    out = json.loads(run(prefix, STEP, env=dict(environ, NNGRAPH_CACHE_DIR=str(tmp_path), **env_extra)).splitlines()[-1])
    # the pool splits where it is on (its hand-off is then split_ns) and measured cheaper
    # than a thread start (tuning.blas_call_threads): a busy machine may measure it dearer
    pooled_split = (out["loops"] > 1 and env_extra.get("NNGRAPH_THREAD_POOL") != "0"
                    and out["split_ns"] < out["start_ns"])
    if setting == "mkl":
        assert out["per_call"] == (1 if mkl.threading_layer() == "sequential" else out["instance"])
    elif "NNGRAPH_BLAS_THREADS" in env_extra:
        assert out["per_call"] == out["rule"] == 2          # the user's count is kept
    else:
        assert out["blas"] == "openblas"
        assert out["per_call"] == out["rule"] == (1 if pooled_split else out["instance"])
    if out["per_call"] == 1 and out["loops"] > 1:
        assert out["gemm_work"] == out["own"]               # our threads split from a hand-off's worth
    else:
        assert out["gemm_work"] > out["own"]
    if out["blas"] == "openblas" and out["per_call"] == 1 and out["instance"] > 1:
        assert "1 thread per call" in out["describe"]
