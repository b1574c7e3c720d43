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
    for length in LENGTHS:
        X, H0 = _data(length, seed=1)
        C0 = H0[::-1].copy()
        got = fn(X, H0, C0)
        want = lstm_oracle(X, H0, C0, *(p[k].value for k in ("Wx", "Wh", "b")))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-5, err_msg=f"length {length}")
