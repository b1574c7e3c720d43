"""model.fit(..., target="gpu"): the data set goes to the device once and every step
gets batches gathered there (device tensors), with the same history as on the host."""
import numpy as np
import pytest

from gpu_skip import require_gpu_target

require_gpu_target()

import torch  # noqa: E402

import nngraph as ng  # noqa: E402


def _blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    centers = np.array([[2, 0, 0, 1], [0, 2, 0, -1], [0, 0, 2, 0]], np.float32)
    return centers[y] + 0.5 * rng.normal(size=(n, 4)).astype(np.float32), y


def _model(target):
    model = ng.nn.Sequential([ng.nn.Dense(8, activation="tanh"), ng.nn.Dense(3)], input_shape=(4,))
    model.compile(ng.optim.SGD(0.2, momentum=0.9), "cross_entropy", ["accuracy"], target=target)
    rng = np.random.default_rng(1)
    for p in model.params:   # the same start on both targets
        p.value = rng.normal(size=p.value.shape).astype(np.float32) * 0.5
    return model


def test_fit_on_gpu_feeds_device_batches_and_matches_the_reference(monkeypatch):
    X, y = _blobs()
    gpu, ref = _model("gpu"), _model("reference")
    step = gpu.compiled("train")
    seen, moved = [], []
    real_call, real_move = type(step).__call__, type(step).to_device

    def spy_call(fn, *args, **kw):
        if fn is step:
            seen.append(all(isinstance(a, torch.Tensor) for a in args))
        return real_call(fn, *args, **kw)

    def spy_move(fn, a):
        if fn is step:
            moved.append(np.shape(a))
        return real_move(fn, a)

    monkeypatch.setattr(type(step), "__call__", spy_call)
    monkeypatch.setattr(type(step), "to_device", spy_move)
    hg = gpu.fit(X, y, epochs=3, batch_size=16, verbose=0)
    hr = ref.fit(X, y, epochs=3, batch_size=16, verbose=0)
    assert seen and all(seen) and len(seen) == 3 * 4            # every step got device tensors
    assert moved[:2] == [(60, 4), (60,)] and moved[2:] == [(60,)] * 3   # the data once, then each epoch's order
    for k in ("loss", "accuracy"):
        np.testing.assert_allclose(hg[k], hr[k], rtol=1e-4, atol=1e-6)
    for p, q in zip(gpu.params, ref.params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-4, atol=1e-5)


def test_fit_keeps_host_batches_when_the_data_does_not_fit(monkeypatch):
    X, y = _blobs(20)
    model = _model("gpu")
    step = model.compiled("train")
    monkeypatch.setattr(step.runner, "fits_on_device", lambda nbytes: False)
    kinds = []
    real = type(step).__call__
    monkeypatch.setattr(type(step), "__call__",
                        lambda fn, *a, **k: (kinds.append(type(a[0])), real(fn, *a, **k))[1])
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert kinds == [np.ndarray] * 3
