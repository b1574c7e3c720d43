"""Which BLAS the generated code calls on this host: scipy's OpenBLAS or Intel MKL
(codegen/llvm/mkl.py, when the `mkl` wheel is installed), the faster at our shapes,
measured once per host.

    NNGRAPH_BLAS unset or auto   time the installed candidates, keep the faster
    NNGRAPH_BLAS=openblas        scipy's OpenBLAS (what ran before MKL was a choice)
    NNGRAPH_BLAS=mkl             MKL; an error naming the extra if it is not installed

A user's OPENBLAS_CORETYPE is respected as before: with it set, and neither
NNGRAPH_BLAS=auto nor NNGRAPH_BLAS_CORETYPE (codegen/llvm/blas.py) saying otherwise,
the BLAS is OpenBLAS with that core type, untimed (a pin is a statement about the
BLAS to run: reproducible results, or a CPU OpenBLAS misdetects).

Neither wins everywhere: on an AVX-512 Xeon MKL's sgemm was 1.1-2x faster on one
thread at small M (a recurrent step's 32x256x1024), and OpenBLAS's hand-written
kernels for a CPU MKL does not favour may win elsewhere; nothing here is fitted to
one machine. The products timed are the shapes the compiler makes most (SHAPES: a
recurrent step, an MLP layer, an im2col convolution, a filter gradient with a long
k), each on one BLAS thread and on the configured count (for a BLAS whose calls stay
on one thread, as one part of the split nngraph's own threads make), rounds
interleaved, the best of each; the candidate with the smaller total wins. About 0.1 s, once per host:
the answer is kept in `blas-choice.json` in nngraph's cache directory (codegen/cache.py:
private to the user, written atomically; a damaged or foreign file is measured
again; one timed on a disturbed machine is provisional, codegen/timing_trust.py),
keyed by the CPU, its features and the candidates' own settings (versions,
core type, threads), so a new CPU, an upgrade or another setting measures again.
With one candidate installed nothing is timed.
"""
from __future__ import annotations

import hashlib
import os
import time

import numpy as np

from codegen import timing_trust
from codegen.cache import read_json_table, write_json_table

CHOICES = ("auto", "openblas", "mkl")
CACHE_FILE = "blas-choice.json"
# (m, k, n, trans_a, trans_b) of row-major C[m, n] = op(A) op(B)
# (about 100M multiply-adds per candidate and thread count: a few ms a round on an
# idle machine; BLAS threads waiting for busy cores can make a round 10-100x slower)
SHAPES = ((32, 256, 1024, False, False),    # LSTM(256) step: h @ W_hh, batch 32
          (128, 784, 512, False, False),    # MLP 784-512 layer, batch 128
          (784, 576, 64, False, False),     # im2col conv 3x3x64 -> 64 on 28x28
          (32, 3136, 144, False, True))     # filter gradient of a 3x3x16 -> 32 conv on 56x56: k = 3136
ROUNDS = 10
TIMING = "one-thread BLAS timed as one part of our split"   # in the key: how the candidates are timed
BUDGET_S = 0.1     # seconds of timing after which no further round starts (a busy machine)


def requested(env=None) -> str:
    """NNGRAPH_BLAS, checked: "auto", "openblas" or "mkl"."""
    env = os.environ if env is None else env
    raw = env.get("NNGRAPH_BLAS", "").strip().lower() or "auto"
    if raw not in CHOICES:
        raise ValueError(f"NNGRAPH_BLAS must be one of {', '.join(CHOICES)} (or unset), got {raw!r}")
    return raw


def pinned_core_type(env=None) -> bool:
    """True when the user pinned OpenBLAS's core type (OPENBLAS_CORETYPE) and has not
    opted in to a choice over it (NNGRAPH_BLAS set, or NNGRAPH_BLAS_CORETYPE other
    than inherit)."""
    env = os.environ if env is None else env
    opted_in = env.get("NNGRAPH_BLAS", "").strip() or \
        env.get("NNGRAPH_BLAS_CORETYPE", "").strip().lower() not in ("", "inherit")
    return bool(env.get("OPENBLAS_CORETYPE", "").strip()) and not opted_in


def choose(candidates: dict, installed: tuple, key_parts: list, threads: int, one_thread=frozenset()) -> tuple:
    """(name, entry) of the BLAS to use: `candidates` are {name: load()}, where load()
    returns the addresses (blas.gemm_addresses' form) or raises why the candidate
    cannot run here; auto picks among the `installed` ones; `one_thread` names those
    whose calls stay on the calling thread (time_candidates). entry is the measurement
    that chose, or None when nothing was timed (forced, or one candidate). A stored
    choice loads only the winner. One stored as provisional (timed while the machine
    was disturbed, codegen/timing_trust.py) is timed again by a process that starts
    while the machine is not busy (timing_trust.due), until it is final."""
    want = requested()
    if want == "auto" and pinned_core_type():
        return "openblas", None
    if want != "auto":
        try:
            candidates[want]()
        except Exception as e:      # a forced candidate that cannot load is the user's to fix
            raise type(e)(f"NNGRAPH_BLAS={want}: {e}") from None
        return want, None
    candidates = {name: candidates[name] for name in installed}
    if len(candidates) == 1:
        return next(iter(candidates)), None
    key = host_key(key_parts)
    stored = read_json_table(CACHE_FILE).get(key)
    usable_entry = (isinstance(stored, dict) and stored.get("choice") in candidates
                    and timing_trust.valid(stored.get("trust")))
    if usable_entry and not timing_trust.due(stored.get("trust")) and _loads(candidates[stored["choice"]]):
        return stored["choice"], stored
    usable = {name: addresses for name, load in candidates.items() if (addresses := _loads(load))}
    if len(usable) <= 1:
        return next(iter(usable), "openblas"), None
    entry = time_candidates(usable, threads, one_thread=one_thread)
    evidence = entry.pop("evidence", None)
    if evidence is not None:
        entry["trust"] = timing_trust.record(evidence, stored.get("trust") if usable_entry else None)
    table = read_json_table(CACHE_FILE)     # as it is now: another process may have added a key
    table[key] = entry
    write_json_table(CACHE_FILE, table)
    return entry["choice"], entry


def _loads(load):
    """load()'s addresses, or None when the candidate cannot run here (auto: it is
    simply not a choice; NNGRAPH_BLAS names it to see why)."""
    try:
        return load()
    except Exception:               # noqa: BLE001
        return None


def host_key(key_parts: list) -> str:
    """What a measurement depends on: the CPU, its features as NNGRAPH_CPU_FEATURES
    leaves them and the candidates' settings (key_parts), the shapes timed and how
    (TIMING: a verdict of an older way of timing is measured again)."""
    from codegen.host import effective_feature_text, llvm_host
    parts = [llvm_host()["cpu"], effective_feature_text(), repr(SHAPES), TIMING, *key_parts]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def time_candidates(usable: dict, threads: int, shapes=SHAPES, rounds=ROUNDS, budget_s=BUDGET_S,
                    one_thread=frozenset()) -> dict:
    """{"choice", "seconds": {name: total}, "gflops": {name: {"MxKxN/threads": rate}},
    "evidence"}: each candidate's best time per product of `shapes` ((m, k, n, trans_a,
    trans_b)), on one thread and on `threads`; rounds interleaved, no new one after
    `budget_s`; what the system saw meanwhile (codegen/timing_trust.py: the chosen
    candidate's rounds).

    A candidate in `one_thread` (MKL's sequential layer) ignores a thread count: the
    generated code splits its products across nngraph's own threads instead, each
    part a one-thread call on its own core. Its `threads` mode is therefore timed as
    one such part (the product's first ceil(m/threads) rows), not as the whole product
    on one thread, which made OpenBLAS's two threads win an AVX2 host where MKL split
    two ways was faster (MLP inference b128: 790 against 876 us)."""
    from .blas_call import gemm_function, row_major_gemm, threads_function
    rng = np.random.default_rng(0)
    modes = (1, threads) if threads > 1 else (1,)
    work = []     # (name, shape label, threads, set_threads, product)
    for m, k, n, ta, tb in shapes:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        for name, addresses in usable.items():
            gemm = gemm_function(addresses, "float32")
            for t in modes:
                rows = -(-m // t) if name in one_thread else m
                part = np.ascontiguousarray(a[:, :rows] if ta else a[:rows])
                product = row_major_gemm(gemm, part, b, np.zeros((rows, n), np.float32), ta, tb)
                work.append((name, f"{m}x{k}x{n}/{t}", t, threads_function(addresses), product))
    best = {(name, label): float("inf") for name, label, *_ in work}
    totals = {name: [] for name in usable}      # each candidate's seconds per round
    watch = timing_trust.Watch()
    start = time.perf_counter()
    for r in range(rounds):         # the first round warms (the BLAS's threads start): best of all
        for name in totals:
            totals[name].append(0.0)
        for name, label, t, set_threads, product in (work if r % 2 == 0 else work[::-1]):
            set_threads(t)
            t0 = time.perf_counter()
            product()
            seconds = time.perf_counter() - t0
            best[name, label] = min(best[name, label], seconds)
            totals[name][-1] += seconds
            set_threads(threads)
        watch.sample()
        if time.perf_counter() - start > budget_s:
            break
    summary = _summary(best, usable, shapes, time.perf_counter() - start)
    chosen = totals[summary["choice"]]
    return dict(summary, evidence=watch.evidence(len(chosen), chosen))


def _summary(best: dict, usable: dict, shapes, seconds: float) -> dict:
    totals = {name: sum(s for (n, _), s in best.items() if n == name) for name in usable}
    flops = {f"{m}x{k}x{n}": 2.0 * m * k * n for m, k, n, *_ in shapes}
    rates = {name: {label: round(flops[label.split("/")[0]] / s / 1e9, 1)
                    for (n, label), s in best.items() if n == name} for name in usable}
    return {"choice": min(totals, key=totals.get), "seconds": totals, "gflops": rates,
            "timing_seconds": round(seconds, 3)}
