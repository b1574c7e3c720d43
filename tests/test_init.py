"""Initialisers: sample mean and variance match the course's formulas (LeCun 1/n,
Glorot 2/(n+m), He 2/n; uniform bounds sqrt(3 var)), within sampling error."""
import math

import numpy as np
import pytest

import nngraph as ng

# (name, variance as a function of fan-in n and fan-out m, uniform?)
CASES = [
    ("lecun_normal", lambda n, m: 1 / n, False),
    ("lecun_uniform", lambda n, m: 1 / n, True),
    ("glorot_normal", lambda n, m: 2 / (n + m), False),
    ("glorot_uniform", lambda n, m: 2 / (n + m), True),
    ("he_normal", lambda n, m: 2 / n, False),
    ("he_uniform", lambda n, m: 2 / n, True),
]


@pytest.mark.parametrize("shape,n,m", [((300, 200), 300, 200), ((32, 16, 5, 5), 400, 800)])
@pytest.mark.parametrize("name,var,is_uniform", CASES)
def test_sample_mean_and_variance_match_the_formula(name, var, is_uniform, shape, n, m):
    w = getattr(ng.init, name)(shape, seed=1)
    assert w.shape == shape and w.dtype == np.float32
    v = var(n, m)
    k = w.size
    # mean: standard error sqrt(v/k); variance: standard error about v*sqrt(2/k) (normal)
    assert abs(w.mean()) < 5 * math.sqrt(v / k)
    assert abs(w.var() - v) < 5 * v * math.sqrt(2 / k)
    if is_uniform:
        bound = math.sqrt(3 * v)
        assert np.abs(w).max() <= bound + 1e-7
        assert np.abs(w).max() > 0.99 * bound  # the draws reach the bound
    else:
        # a normal sample has about 31.7% of values beyond one standard deviation
        frac = np.mean(np.abs(w) > math.sqrt(v))
        assert abs(frac - 0.3173) < 0.02


def test_normal_uniform_zeros():
    w = ng.init.normal((200, 300), std=0.3, mean=1.0, seed=2)
    assert abs(w.mean() - 1.0) < 0.01 and abs(w.std() - 0.3) < 0.01
    u = ng.init.uniform((200, 300), low=-2.0, high=1.0, seed=3)
    assert u.min() >= -2.0 and u.max() < 1.0 and abs(u.mean() + 0.5) < 0.02
    assert abs(u.var() - 9 / 12) < 0.02
    z = ng.init.zeros((3, 4))
    assert z.dtype == np.float32 and not z.any()


def test_seed_and_rng_repeat():
    a = ng.init.he_normal((10, 10), seed=5)
    b = ng.init.he_normal((10, 10), seed=5)
    np.testing.assert_array_equal(a, b)
    c = ng.init.he_normal((10, 10), rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, ng.init.he_normal((10, 10), seed=6))
    with pytest.raises(ValueError, match="seed or rng"):
        ng.init.he_normal((2, 2), seed=1, rng=np.random.default_rng(1))


def test_fans():
    assert ng.init.fans((64, 10)) == (64, 10)
    assert ng.init.fans((6, 3, 5, 5)) == (75, 150)


def test_get_by_name_and_unknown():
    assert ng.init.get("glorot_uniform") is ng.init.glorot_uniform
    with pytest.raises(ValueError, match="unknown initialiser"):
        ng.init.get("xavier_magic")
