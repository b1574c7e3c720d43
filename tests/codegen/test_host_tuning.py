"""Thresholds derived from host facts (codegen/tuning.py) and how the facts are read
and kept (codegen/host.py). Every derivation is checked with the facts of a made-up
AVX2 and AVX-512 machine, so nothing here depends on the CPU that runs it."""
import json
import os

import pytest

from codegen import host, tuning
from codegen.host import HostFacts
from codegen.llvm.target import feature_enabled, prefer_width_features

ZEN3 = HostFacts(cpu_model="AMD EPYC 7B13", vendor="AuthenticAMD", logical_cpus=2, physical_cores=2,
                 vector_bits=256, ghz=2.45, l1d=32 << 10, l2=512 << 10, l3=32 << 20, thread_start_ns=20000.0)
SPR = HostFacts(cpu_model="Intel(R) Xeon(R) Processor", vendor="GenuineIntel", logical_cpus=2, physical_cores=2,
                vector_bits=512, ghz=2.6, l1d=48 << 10, l2=2 << 20, l3=480 << 20, thread_start_ns=9000.0)
SMT16 = HostFacts(cpu_model="big", vendor="GenuineIntel", logical_cpus=16, physical_cores=8,
                  vector_bits=256, ghz=3.0, l1d=48 << 10, l2=1 << 20, l3=30 << 20, thread_start_ns=15000.0)


def test_avx512_host():
    t = tuning.derive(SPR)
    assert t.vector_bits == 512 and t.column_tile == 128
    # 8 x 9000 ns x (16 lanes x 2.6 GHz x 2) = 6.0M -> 2**23; 4 x 9000 x 83.2 = 3.0M -> 2**22
    assert t.loop_split_work == 1 << 23
    assert t.blas_thread_work == 1 << 22
    assert t.gemm_split_work == 1 << 27
    assert t.gemm_column_split_work == 1 << 23      # two parts, each worth waking a BLAS thread
    assert (t.loop_threads, t.blas_threads) == (2, 2)


def test_avx2_host():
    t = tuning.derive(ZEN3)
    assert t.vector_bits == 256 and t.column_tile == 64
    # 8 x 20000 ns x (8 lanes x 2.45 GHz x 2) = 6.3M -> 2**23; 4 x 20000 x 39.2 = 3.1M -> 2**22
    assert t.loop_split_work == 1 << 23
    assert t.blas_thread_work == 1 << 22


COSTS_NS = (50.0, 150.0, 300.0, 1000.0, 2600.0, 9000.0, 15000.0, 61000.0, 1e6)


@pytest.mark.parametrize("facts", [ZEN3, SPR, SMT16], ids=["zen3", "spr", "smt16"])
def test_thresholds_are_monotone_in_the_split_cost(facts):
    """A dearer split never lowers a threshold, whichever cost it is: the pool's
    hand-off (loops, our GEMM parts) or the thread start (also the BLAS's threads)."""
    fields = ("loop_split_work", "own_split_work", "gemm_column_split_work", "gemm_split_work", "blas_thread_work")
    for env in ({}, {"NNGRAPH_BLAS_THREADS": "1"}):
        by_pool = [tuning.derive(facts, env, ns) for ns in COSTS_NS]
        by_start = [tuning.derive(HostFacts(**{**facts.__dict__, "thread_start_ns": ns}), env) for ns in COSTS_NS]
        for series in (by_pool, by_start):
            for f in fields:
                values = [getattr(t, f) for t in series]
                assert values == sorted(values), (f, env, values)
        assert by_start[-1].loop_split_work > by_start[0].loop_split_work


def test_pool_splits_pay_the_hand_off_and_the_blas_threads_the_thread_start():
    """Through the pool (a worker kept awake) a split costs SPR's 300 ns, not its 9 us
    thread start: loops and our GEMM parts split from ~32x less work; the work that
    wakes a BLAS's own thread is unchanged. Without the pool (None) the thread start
    applies to all, as before."""
    plain, pooled = tuning.derive(SPR), tuning.derive(SPR, {}, 300.0)
    assert plain == tuning.derive(SPR, {}, None)
    assert (plain.split_ns, pooled.split_ns) == (SPR.thread_start_ns, 300.0)     # the unit, for the report
    # 8 x 300 ns x 83.2 ops/ns = 200K -> 2**18; 4 x 300 x 83.2 = 100K -> 2**17
    assert (pooled.loop_split_work, pooled.own_split_work) == (1 << 18, 1 << 17)
    assert pooled.gemm_column_split_work == 1 << 18
    assert pooled.blas_thread_work == plain.blas_thread_work
    # through the pool each BLAS call runs on one thread: our threads split from own_split_work
    assert (pooled.blas_call_threads, plain.blas_call_threads) == (1, 2)
    assert pooled.gemm_split_work == pooled.own_split_work == 1 << 17 and plain.gemm_split_work == 1 << 27
    one = tuning.derive(SPR, {"NNGRAPH_BLAS_THREADS": "1"}, 300.0)
    assert one.gemm_split_work == one.own_split_work == 1 << 17
    assert plain.own_split_work == plain.blas_thread_work


@pytest.mark.parametrize("facts, env, pool_ns, want", [
    (SPR, {}, 300.0, 1),                                   # the pool splits: one BLAS thread per call
    (SPR, {}, None, 2),                                    # no pool: the BLAS's own threads, one per core
    (SPR, {}, SPR.thread_start_ns, 2),                     # a hand-off no cheaper than a thread start
    (SPR, {"NNGRAPH_NUM_THREADS": "1"}, 300.0, 2),         # our threads split nothing
    (SPR, {"NNGRAPH_BLAS_THREADS": "2"}, 300.0, 2),        # the user's count is kept
    (SPR, {"NNGRAPH_BLAS_THREADS": "1"}, None, 1),
    (SMT16, {}, 300.0, 1),
    (SMT16, {}, None, 8),                                  # one per physical core, not per SMT sibling
    (ZEN3, {}, 2000.0, 1),
])
def test_one_blas_thread_per_call_where_the_pool_splits_the_products(facts, env, pool_ns, want):
    """The cores get one team of waiting threads: where our worker pool splits the
    products (more than one loop thread, a hand-off cheaper than a thread start) every
    BLAS call runs on one thread, and the split threshold is the work that pays for a
    hand-off; elsewhere the BLAS's own threads split them, as NNGRAPH_BLAS_THREADS says."""
    t = tuning.derive(facts, env, pool_ns)
    assert t.blas_call_threads == tuning.blas_call_threads(facts, env, pool_ns) == want
    assert t.blas_threads == (int(env["NNGRAPH_BLAS_THREADS"]) if "NNGRAPH_BLAS_THREADS" in env else facts.physical_cores)
    expected = t.own_split_work if want == 1 and t.loop_threads > 1 else 32 * t.blas_thread_work
    assert t.gemm_split_work == expected


def test_thresholds_follow_the_thread_start_cost_and_the_vector_width():
    slow = tuning.derive(HostFacts(**{**SPR.__dict__, "thread_start_ns": 4 * SPR.thread_start_ns}))
    assert slow.loop_split_work == 4 * tuning.derive(SPR).loop_split_work
    narrow = tuning.derive(SPR, {"NNGRAPH_VECTOR_BITS": "256"})
    assert narrow.vector_bits == 256 and narrow.column_tile == 64
    assert narrow.loop_split_work == tuning.derive(SPR).loop_split_work // 2


def test_smt_host_uses_every_cpu_for_loops_and_one_blas_thread_per_core():
    t = tuning.derive(SMT16)
    assert (t.loop_threads, t.blas_threads) == (16, 8)


def test_environment_overrides():
    t = tuning.derive(ZEN3, {"NNGRAPH_NUM_THREADS": "3", "NNGRAPH_BLAS_THREADS": "1", "NNGRAPH_VECTOR_BITS": "128"})
    assert (t.loop_threads, t.blas_threads, t.vector_bits) == (3, 1, 128)
    assert tuning.derive(ZEN3, {"NNGRAPH_NUM_THREADS": "100000"}).loop_threads == tuning.MAX_THREADS


def test_one_blas_thread_leaves_the_gemm_split_to_our_threads():
    """With NNGRAPH_BLAS_THREADS=1 a GEMM big enough to have woken a second BLAS thread
    is split across our threads instead; with one loop thread nothing splits it."""
    base = tuning.derive(SPR)
    one = tuning.derive(SPR, {"NNGRAPH_BLAS_THREADS": "1"})
    assert base.gemm_split_work == 32 * base.blas_thread_work
    assert one.gemm_split_work == one.blas_thread_work == base.blas_thread_work
    alone = tuning.derive(SPR, {"NNGRAPH_BLAS_THREADS": "1", "NNGRAPH_NUM_THREADS": "1"})
    assert alone.gemm_split_work == base.gemm_split_work


@pytest.mark.parametrize("env, match", [
    ({"NNGRAPH_NUM_THREADS": "two"}, "NNGRAPH_NUM_THREADS must be a positive integer, got 'two'"),
    ({"NNGRAPH_BLAS_THREADS": "x"}, "NNGRAPH_BLAS_THREADS"),
    ({"NNGRAPH_VECTOR_BITS": "384"}, "must be 128, 256 or 512, got '384'"),
    ({"NNGRAPH_VECTOR_BITS": "512"}, "AMD EPYC 7B13.* 256-bit vectors at most"),
])
def test_bad_environment_is_a_clear_error(env, match):
    with pytest.raises(ValueError, match=match):
        tuning.derive(ZEN3, env)


def test_pow2_round():
    assert [tuning.pow2_round(x) for x in (0, 1, 3, 5.9e6, 6.0e6, 1 << 20, 1e30)] == [1, 1, 4, 1 << 22, 1 << 23, 1 << 20, 1 << 56]


@pytest.mark.parametrize("features, bits", [
    ({"avx2": True, "fma": True, "avx512f": True, "avx512bw": True, "avx512dq": True, "avx512vl": True}, 512),
    ({"avx2": True, "fma": True, "avx512f": True}, 256),     # AVX-512 F alone (Knights Landing): not used
    ({"avx2": True, "fma": True}, 256),
    ({"avx": True, "sse4.2": True}, 128),
])
def test_vector_width_from_features(features, bits):
    assert host.vector_bits_of(features) == bits


def test_prefer_width_features():
    assert prefer_width_features(512) == "-prefer-128-bit,-prefer-256-bit"
    assert prefer_width_features(256) == "-prefer-128-bit,+prefer-256-bit"
    assert prefer_width_features(128) == "+prefer-128-bit"


@pytest.mark.parametrize("text, n", [("48K", 48 << 10), ("2048K", 2 << 20), ("32M", 32 << 20), ("", 0), ("?", 0)])
def test_parse_cache_size(text, n):
    assert host.parse_size(text) == n


def test_measurement_is_kept_per_host_and_damage_is_remeasured(tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    static = {k: v for k, v in SPR.__dict__.items() if k != "thread_start_ns"}
    path = host._facts_path(static)
    assert path.parent == tmp_path and path.name.startswith("host-")
    assert host._load_measured(path, static) == {}
    host._store_measured(path, static, {"thread_start_ns": 1234.5})
    assert host._load_measured(path, static) == {"thread_start_ns": 1234.5}
    assert json.loads(path.read_text())["static"] == static
    assert host._load_measured(path, {**static, "logical_cpus": 4}) == {}      # another host's facts
    other = host._facts_path({**static, "vector_bits": 256})
    assert other != path                                                       # one file per host
    path.write_text("{not json")
    assert host._load_measured(path, static) == {}
    host._store_measured(path, static, {"thread_start_ns": 99.0})
    os.chmod(path, 0o666)                                                      # others could have written it
    with pytest.warns(RuntimeWarning, match="writable by group or others"):
        assert host._load_measured(path, static) == {}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_each_cost_is_measured_once_per_host_and_kept_beside_the_others(tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    static = {k: v for k, v in SPR.__dict__.items() if k != "thread_start_ns"}
    calls = []

    def measure(ns):
        return lambda: calls.append(ns) or ns
    assert host.measured_fact("thread_start_ns", measure(9000.0), static) == 9000.0
    assert host.measured_fact("pool_split_ns", measure(300.0), static) == 300.0
    assert host.measured_fact("thread_start_ns", measure(61000.0), static) == 9000.0   # kept, not measured
    assert calls == [9000.0, 300.0]
    assert host._load_measured(host._facts_path(static), static) == {"thread_start_ns": 9000.0,
                                                                      "pool_split_ns": 300.0}


def test_facts_of_another_format_version_are_measured_again(tmp_path, monkeypatch):
    """A file of the format before FACTS_VERSION 2 (one thread_start_ns, measured as
    a round's mean, which could keep a VM's slow mode for good) is not used."""
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    static = {k: v for k, v in SPR.__dict__.items() if k != "thread_start_ns"}
    path = host._facts_path(static)
    path.write_text(json.dumps({"static": static, "thread_start_ns": 61000.0}))
    os.chmod(path, 0o600)
    assert host._load_measured(path, static) == {}
    assert host.measured_fact("thread_start_ns", lambda: 9000.0, static) == 9000.0
    data = json.loads(path.read_text())
    assert data["version"] == host.FACTS_VERSION and data["measured"] == {"thread_start_ns": 9000.0}
    path.write_text(json.dumps({**data, "version": host.FACTS_VERSION - 1}))
    assert host._load_measured(path, static) == {}


def _bimodal_clock(durations):
    """A clock whose successive (start, end) readings are `durations` apart."""
    readings, t = [], 0
    for d in durations:
        readings += [t, t + d]
        t += d + 100
    it = iter(readings)
    return lambda: next(it)


@pytest.mark.parametrize("pattern", ["interleaved", "slow rounds first", "mostly slow"])
def test_a_bimodal_cost_gives_its_warm_value(pattern):
    """A VM's thread start: 9 us warm, 61 us when the host is slow to run the new
    thread; the slow mode may take whole rounds or most timings. The warm value is
    kept (it was 61 us, every threshold 4x, when one slow round's mean was kept)."""
    rounds, per_round, warm, slow = 8, 16, 9000, 61000
    n = rounds * per_round
    durations = {"interleaved": [warm if i % 2 else slow for i in range(n)],
                 "slow rounds first": [slow] * (n // 2) + [warm + i for i in range(n // 2)],
                 "mostly slow": [warm if i % 5 == 0 else slow + i for i in range(n)]}[pattern]
    clock = _bimodal_clock(durations)
    got = host.measure_thread_start_ns(rounds=rounds, per_round=per_round, gap_s=0, clock=clock)
    assert warm <= got < 1.1 * warm


def test_warm_value_ignores_a_rare_faster_fluke():
    assert host.warm_ns([100] + [9000] * 40 + [61000] * 40) == 9000
    with pytest.raises(ValueError, match="no timings"):
        host.warm_ns([])


def test_thread_start_measurement_is_positive():
    assert host.measure_thread_start_ns(rounds=2, per_round=2, gap_s=0) > 0


def test_this_hosts_facts_are_consistent():
    """tuning() is derive() of this host's facts and the split cost it records (read
    once per process: an earlier test may have had it measured under another cache
    directory, so it is compared with its own split_ns, not with a new reading)."""
    from codegen.llvm.thread_pool import pool_enabled
    f = host.host_facts()
    assert 1 <= f.physical_cores <= f.logical_cpus
    assert f.vector_bits in (128, 256, 512) and f.ghz > 0 and f.thread_start_ns > 0
    t = tuning.tuning()
    assert t.split_ns > 0 and (pool_enabled() or t.split_ns == f.thread_start_ns)
    assert t == tuning.derive(f, os.environ, t.split_ns if pool_enabled() else None)


def test_feature_overrides():
    assert host.feature_overrides({"NNGRAPH_CPU_FEATURES": " -avx512f, +fma "}) == ["-avx512f", "+fma"]
    with pytest.raises(ValueError, match="NNGRAPH_CPU_FEATURES must be .* got 'avx512f'"):
        host.feature_overrides({"NNGRAPH_CPU_FEATURES": "avx512f"})
    feats = host.cpu_features({"avx2": True, "fma": True, "avx512f": True, "avx512bw": True, "avx512dq": True,
                               "avx512vl": True}, ["-avx512f"])
    assert host.vector_bits_of(feats) == 256 and not feats["avx512vl"] and feats["avx2"]


def test_a_feature_is_on_as_its_last_mention_says():
    # the overrides follow the host's features in the list LLVM gets: the last one wins
    assert not feature_enabled("+avx2,+avx512f,-avx512f", "avx512f")
    assert feature_enabled("+avx2,-avx512f,+avx512f", "avx512f")
    assert not feature_enabled("+avx512fp16,+avx2", "avx512f")


AVX2_CHECK = r"""
import numpy as np, sys
sys.path[:0] = ["tests", "tests/codegen"]
from codegen.host import host_facts
from codegen.llvm import target
from codegen.tuning import tuning
import test_scalar_ops as T
assert host_facts().vector_bits <= 256 and tuning().column_tile <= 64, (host_facts(), tuning())
assert target.features().endswith("-avx512f,-prefer-128-bit,+prefer-256-bit") or host_facts().vector_bits < 256
assert not target.has_feature("avx512f")    # exp scales by two multiplies, not vscalef (mathfns.py)
for op in ("tanh", "sigmoid", "exp", "expm1", "softplus"):
    x = T._inputs("float32")
    got = T._unary(op, "float32", x)
    want = np.asarray(T.UNARY_REFS[op](x.astype(np.float64)), dtype=np.float64)
    err = T._ulps(got, want, "float32")
    assert err.max() <= 4, (op, err.max())
print("ok")
"""


def test_code_without_avx512_keeps_the_ulp_bounds(tmp_path):
    """NNGRAPH_CPU_FEATURES=-avx512f: the facts, thresholds and code of a machine
    without AVX-512 (AVX2 vectors, 256 bits), run on this one; the functions stay
    within their ulp bounds there too."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, NNGRAPH_CPU_FEATURES="-avx512f", NNGRAPH_CACHE_DIR=str(tmp_path),
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NNGRAPH_VECTOR_BITS", None)
    p = subprocess.run([sys.executable, "-c", AVX2_CHECK], cwd=root, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-2000:]


def test_a_host_that_cannot_start_threads_never_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))

    def refuse(*a, **k):
        raise OSError("pthread_create failed while measuring the thread start cost")
    monkeypatch.setattr(host, "measure_thread_start_ns", refuse)
    host.host_facts.cache_clear()
    try:
        facts = host.host_facts()
    finally:
        host.host_facts.cache_clear()
    assert facts.thread_start_ns == host.NO_THREADS_NS
    t = tuning.derive(facts)
    assert t.loop_split_work >= 1 << 45 and t.blas_thread_work >= 1 << 45     # hours of work
