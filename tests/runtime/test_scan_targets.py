"""Scan graphs compiled for every target (the graph interpreter, the Program
interpreter, LLVM, Triton's interpreter) agree with NumPy for lengths 0, 1, 7 and
500 from one compile: an Elman RNN (forward and reverse) and an LSTM cell."""
from __future__ import annotations

import numpy as np
import pytest

import helpers
from scan_models import elman, elman_oracle, lstm, lstm_oracle

LENGTHS = (0, 1, 7, 500)


def _data(length, n=3, seed=0):
    rng = np.random.default_rng(seed + length)
    return (rng.standard_normal((length, n, 4)).astype(np.float32),
            (rng.standard_normal((n, 6)) * 0.5).astype(np.float32))


@pytest.mark.parametrize("reverse", [False, True])
def test_elman_scan_on_every_target_for_every_length(target, reverse):
    xs, h0, p, (hT, ys) = elman(reverse=reverse)
    fn = helpers.compile([xs, h0], [hT, ys], target=target)
    for length in LENGTHS:
        X, H0 = _data(length)
        got_h, got_ys = fn(X, H0)
        want_h, want_ys = elman_oracle(X, H0, *(p[k].value for k in ("Wx", "Wh", "b")), reverse=reverse)
        assert got_ys.shape == (length, 3, 6) and got_h.shape == (3, 6)
        np.testing.assert_allclose(got_h, want_h, rtol=1e-4, atol=2e-5, err_msg=f"length {length}")
        np.testing.assert_allclose(got_ys, want_ys, rtol=1e-4, atol=2e-5, err_msg=f"length {length}")


def test_lstm_cell_scan_on_every_target_for_every_length(target):
    xs, (h0, c0), p, ((hT, cT), hs) = lstm()
    fn = helpers.compile([xs, h0, c0], [hT, cT, hs], target=target)
    for length in LENGTHS if target != "gpu" else (0, 1, 7, 60):   # the Elman test runs 500 there
        X, H0 = _data(length, seed=1)
        C0 = H0[::-1].copy()
        got = fn(X, H0, C0)
        want = lstm_oracle(X, H0, C0, *(p[k].value for k in ("Wx", "Wh", "b")))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-5, err_msg=f"length {length}")


def test_reductions_as_carry_and_scalar_steps_on_every_target(target):
    """A body whose new carry and per-step result are reductions (stored by the loop's
    own buffers, not read by any kernel) and whose steps are 0-d slices."""
    import nngraph as ng
    m = ng.placeholder(("T", "K"), "float64", name="m")
    s = ng.placeholder(("T",), "float64", name="s")
    tot, peaks = ng.scan(lambda acc, x: (ng.sum(x[0] * acc) + x[1], ng.max(x[0])), ng.constant(1.0, "float64"), (m, s))
    fn = helpers.compile([m, s], [tot, peaks], target=target)
    for length in (0, 1, 7):
        M = np.random.default_rng(length).standard_normal((length, 3))
        S = np.arange(length, dtype=np.float64)
        acc = 1.0
        for r, v in zip(M, S):
            acc = float(np.sum(r * acc)) + v
        got_tot, got_peaks = fn(M, S)
        np.testing.assert_allclose(got_tot, acc, rtol=1e-12)
        np.testing.assert_allclose(got_peaks, M.max(axis=1) if length else np.zeros(0), rtol=1e-12)
