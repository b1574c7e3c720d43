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


def _spy_calls(monkeypatch, fn):
    """Records, per call of `fn`, whether every argument was a device tensor, and the
    shapes `fn.to_device` moved."""
    calls, moved = [], []
    real_call, real_move = type(fn).__call__, type(fn).to_device

    def spy_call(f, *args, **kw):
        if f is fn:
            calls.append(all(isinstance(a, torch.Tensor) for a in args))
        return real_call(f, *args, **kw)

    def spy_move(f, a):
        if f is fn:
            moved.append(tuple(np.shape(a)))
        return real_move(f, a)

    monkeypatch.setattr(type(fn), "__call__", spy_call)
    monkeypatch.setattr(type(fn), "to_device", spy_move)
    return calls, moved


def test_fit_on_gpu_feeds_device_batches_and_matches_the_reference(monkeypatch):
    X, y = _blobs()
    gpu, ref = _model("gpu"), _model("reference")
    seen, moved = _spy_calls(monkeypatch, gpu.compiled("train"))
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


@pytest.mark.parametrize("as_tensors", [False, True])
def test_evaluate_on_gpu_reads_batches_on_the_device(monkeypatch, as_tensors):
    """NumPy data goes to the device once and every batch is a slice of it there;
    device tensors (torch CPU tensors under the interpreter) are used where they are.
    Scores equal the reference target's."""
    X, y = _blobs(50)
    gpu, ref = _model("gpu"), _model("reference")
    calls, moved = _spy_calls(monkeypatch, gpu.compiled("evaluate"))
    data = (torch.from_numpy(X), torch.from_numpy(y)) if as_tensors else (X, y)
    got = gpu.evaluate(*data, batch_size=16)
    want = ref.evaluate(X, y, batch_size=16)
    assert calls == [True] * 4                                # 16 + 16 + 16 + 2 rows
    assert moved == [(50, 4), (50,)]                          # each array once (a no-op for tensors)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_predict_on_gpu_keeps_device_outputs_for_device_inputs(monkeypatch):
    X, _ = _blobs(40)
    gpu, ref = _model("gpu"), _model("reference")
    calls, moved = _spy_calls(monkeypatch, gpu.compiled("predict"))
    want = ref.predict(X, batch_size=16)
    out = gpu.predict(torch.from_numpy(X), batch_size=16)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (40, 3)
    np.testing.assert_allclose(out.cpu().numpy(), want, rtol=1e-5, atol=1e-6)   # on a real device too
    host = gpu.predict(X, batch_size=16)                      # NumPy in: moved once, NumPy out
    assert isinstance(host, np.ndarray)
    np.testing.assert_allclose(host, want, rtol=1e-5, atol=1e-6)
    assert calls == [True] * 6 and moved == [(40, 4), (40, 4)]


def test_device_data_of_another_dtype_is_named():
    X, y = _blobs(8)
    model = _model("gpu")
    with pytest.raises(ValueError, match=r"input 'x' takes float32 examples; got a device array \(Tensor\) of "
                                         r"float64, shape \(8, 4\).*x.to\(torch.float32\)"):
        model.predict(torch.from_numpy(X.astype(np.float64)))
    with pytest.raises(ValueError, match=r"targets of output '.*' on the device must be int32.*of int64"):
        model.evaluate(torch.from_numpy(X), torch.from_numpy(y.astype(np.int64)))
    with pytest.raises(ValueError, match=r"input 'x' takes examples of shape \(4,\).*shape \(8, 3\)"):
        model.predict(torch.from_numpy(X[:, :3]))


def _count_score_reads(monkeypatch):
    """Counts reads of a device scalar's value (float(t) or t.item(): each waits for the
    device on a GPU)."""
    reads = []
    real_float, real_item = torch.Tensor.__float__, torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: (reads.append(1), real_float(t))[1])
    monkeypatch.setattr(torch.Tensor, "item", lambda t: (reads.append(1), real_item(t))[1])
    return reads


class _BatchLogs(ng.nn.Callback):
    def __init__(self):
        self.seen = []

    def on_batch_end(self, batch, logs=None):
        self.seen.append(logs)


def test_fit_on_gpu_reads_the_scores_once_per_epoch_not_per_step(monkeypatch):
    """A step's scores stay on the device until the epoch ends (a read per step would
    wait for every step to finish before queueing the next); the history is the host's."""
    X, y = _blobs()
    gpu, ref = _model("gpu"), _model("reference")
    reads = _count_score_reads(monkeypatch)
    hg = gpu.fit(X, y, epochs=3, batch_size=16, verbose=0)
    assert len(reads) == 3 * 2            # per epoch: loss and accuracy, once each (12 steps)
    hr = ref.fit(X, y, epochs=3, batch_size=16, verbose=0)
    for k in ("loss", "accuracy"):
        np.testing.assert_allclose(hg[k], hr[k], rtol=1e-5, atol=1e-6)
    per_epoch = [gpu.step_seconds[i:i + 4] for i in (0, 4, 8)]
    assert len(gpu.step_seconds) == 12 and all(len(set(e)) == 1 for e in per_epoch)   # each epoch's mean


def test_a_callback_reading_batch_logs_gets_numbers_every_step(monkeypatch):
    X, y = _blobs()
    gpu, ref = _model("gpu"), _model("reference")
    cb_gpu, cb_ref = _BatchLogs(), _BatchLogs()
    gpu.fit(X, y, epochs=1, batch_size=16, verbose=0, callbacks=[cb_gpu])
    ref.fit(X, y, epochs=1, batch_size=16, verbose=0, callbacks=[cb_ref])
    assert len(cb_gpu.seen) == 4 and all(type(v) is float for logs in cb_gpu.seen for v in logs.values())
    for a, b in zip(cb_gpu.seen, cb_ref.seen):
        np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=1e-5, atol=1e-6)


def test_a_learning_rate_schedule_counts_steps_on_the_host(monkeypatch):
    """The step number a schedule sees is counted on the host from one read per epoch of
    `iterations` (a read per step would wait for the device); it matches the reference."""
    X, y = _blobs()
    lrs = {}
    for target in ("gpu", "reference"):
        model = ng.nn.Sequential([ng.nn.Dense(8, activation="tanh"), ng.nn.Dense(3)], input_shape=(4,))
        model.compile(ng.optim.SGD(ng.optim.OneCycle(0.5)), "cross_entropy", target=target)
        seen = []
        real = model.optimizer.on_step
        monkeypatch.setattr(model.optimizer, "on_step", lambda s, e, real=real: (seen.append(s), real(s, e))[1])
        model.fit(X, y, epochs=2, batch_size=16, verbose=0)
        lrs[target] = seen
        assert int(model.optimizer.iterations.value) == 8
    assert lrs["gpu"] == lrs["reference"] == list(range(8))


def test_a_lambda_callback_on_batch_end_is_called_every_step():
    """A hook set on the instance (LambdaCallback) reads batch logs like an overridden one."""
    X, y = _blobs()
    seen = []
    hook = ng.nn.LambdaCallback(on_batch_end=lambda batch, logs: seen.append(logs["loss"]))
    _model("gpu").fit(X, y, epochs=1, batch_size=16, verbose=0, callbacks=[hook])
    assert len(seen) == 4 and all(type(v) is float for v in seen)
