"""NNGRAPH_PROFILE=1 builds an entry point that adds each kernel's wall time to a
global array; CompiledProgram.profile() reads (and can reset) it."""
import numpy as np

import nngraph as ng


def test_profile_counts_time_per_kernel(monkeypatch, tmp_path):
    monkeypatch.setenv("NNGRAPH_PROFILE", "1")
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    x = ng.placeholder(("N", 64), name="x")
    w = ng.parameter(np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32), name="w")
    fn = ng.compile([x], ng.softmax(x @ w, axis=-1), target="cpu")
    compiled = fn.runner.compiled
    assert compiled.profile(reset=True) is not None
    xv = np.random.default_rng(1).standard_normal((200, 64)).astype(np.float32)
    for _ in range(3):
        fn(xv)
    p = compiled.profile(reset=True)
    assert p.shape == (len(fn.runner.program.schedule),) and (p > 0).all()
    assert (compiled.profile() == 0).all()


def test_no_profile_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv("NNGRAPH_PROFILE", raising=False)
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    x = ng.placeholder((3,), name="x")
    fn = ng.compile([x], ng.exp(x), target="cpu")
    assert fn.runner.compiled.profile() is None
