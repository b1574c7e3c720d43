"""Memory a Function holds is bounded: work buffers of the last few batch sizes, not
one per size ever seen (issue 11 item 10)."""
import os

import numpy as np
import pytest

import nngraph as ng
from runtime.bindings import MAX_BINDINGS, BindingCache


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_binding_cache_keeps_the_most_recently_used():
    made = []
    cache = BindingCache(lambda env: made.append(env) or env, limit=2)
    for key in (1, 2, 1, 3, 1, 2):
        assert cache.get(key, key) == key
    assert made == [1, 2, 3, 2]            # 2 was dropped when 3 came, 1 kept (used)
    assert len(cache) == 2


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS is read from /proc")
def test_rss_over_400_batch_sizes_stays_bounded():
    x = ng.placeholder(("N", 16), name="x")
    W = ng.parameter(np.full((16, 16), 0.01, np.float32), name="W")
    h = ng.relu(x @ W)
    f = ng.compile([x], ng.sum(ng.relu(h @ W) * h, axis=1), target="cpu")
    f(np.ones((16000, 16), np.float32))
    before = _rss_bytes()
    for n in range(16000, 16400):          # each size's work buffer is about 2 MB (two 1 MB temporaries)
        f(np.ones((n, 16), np.float32))
    grown = _rss_bytes() - before
    assert grown < 80 * 2**20, f"RSS grew by {grown / 2**20:.0f} MB over 400 batch sizes"
    assert len(f.runner._bindings) <= MAX_BINDINGS


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS is read from /proc")
def test_compiles_of_dropped_functions_free_their_native_code(tmp_path, monkeypatch):
    """Each compile's MCJIT engine (object code, TargetMachine) goes with its Function.
    What stays is llvmlite's: about 90 KB per O3 pipeline run (its PassBuilder's
    instrumentation callbacks and the pipeline it builds are never deleted, see
    codegen/llvm/target.py), so the bound is per compile and generous."""
    import gc
    import weakref
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))   # every compile runs LLVM

    engines = []

    def compile_and_drop(i):
        x = ng.placeholder((3, 4 + i), name="x")
        f = ng.compile([x], ng.sum(ng.relu(x * float(i + 1)), axis=1), target="cpu")
        np.testing.assert_allclose(f(np.ones((3, 4 + i), np.float32)), (i + 1) * (4 + i))
        engines.append(weakref.ref(f.runner.compiled.loaded))

    for i in range(10):
        compile_and_drop(i)
    gc.collect()
    before = _rss_bytes()
    n = 60
    for i in range(10, 10 + n):
        compile_and_drop(i)
    gc.collect()
    grown = _rss_bytes() - before
    assert not [r for r in engines if r() is not None], "a dropped Function's engine is still alive"
    assert grown < n * 400 * 2**10, f"RSS grew by {grown / n / 2**10:.0f} KB per compile"
