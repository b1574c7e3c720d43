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
