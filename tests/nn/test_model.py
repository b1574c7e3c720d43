"""Sequential and functional models: compile/fit/evaluate/predict, the compiled
functions they build, save/load, summary, callbacks, losses."""
import numpy as np
import pytest

import nngraph as ng


def _blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    centers = np.array([[2, 0, 0, 1], [0, 2, 0, -1], [0, 0, 2, 0]], np.float32)
    X = centers[y] + 0.5 * rng.normal(size=(n, 4)).astype(np.float32)
    return X, y


def test_sequential_fit_history_evaluate_predict():
    X, y = _blobs()
    model = ng.nn.Sequential([ng.nn.Dense(16, activation="tanh"), ng.nn.Dense(3)], input_shape=(4,))
    model.compile(ng.optim.SGD(0.2, momentum=0.9), "cross_entropy", ["accuracy"], target="reference")
    hist = model.fit(X, y, epochs=6, batch_size=25, validation_data=(X[:30], y[:30]), verbose=0)
    assert set(hist) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 6 for v in hist.values())
    assert hist["loss"][-1] < hist["loss"][0]
    scores = model.evaluate(X, y, batch_size=50)
    assert set(scores) == {"loss", "accuracy"} and scores["accuracy"] > 0.9
    logits = model.predict(X, batch_size=7)  # several batches, the last one shorter
    assert logits.shape == (120, 3)
    acc = np.mean(logits.argmax(1) == y)
    assert acc == pytest.approx(scores["accuracy"], abs=1e-6)
    # evaluate's loss is the cross-entropy of predict's logits
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    assert scores["loss"] == pytest.approx(np.mean(lse - logits[np.arange(120), y]), rel=1e-4)


def test_train_step_is_one_compiled_function_with_every_update():
    model = ng.nn.Sequential([ng.nn.Dense(5), ng.nn.BatchNorm(), ng.nn.Dense(2)], input_shape=(3,))
    opt = ng.optim.Adam(0.01)
    model.compile(opt, "cross_entropy", target="reference")
    step = model.compiled("train")
    updated = {p.name for p in step.updated}
    weights = {p.name for p in model.trainable_params}
    assert weights <= updated
    assert {"iterations"} <= updated and any(n.endswith(".running_mean") for n in updated)
    assert any(n.endswith(".m") for n in updated) and any(n.endswith(".v") for n in updated)
    assert "lr" not in updated  # set from Python between steps, read by the step
    assert any(p.name == "lr" for p in step.params)


def test_functional_model_replays_layers_in_each_mode():
    X, y = _blobs(seed=1)
    x = ng.nn.Input((4,), name="features")
    h1 = ng.nn.Dense(8, activation="relu")(x)
    h2 = ng.nn.Dense(8, activation="tanh")(x)
    h = ng.nn.Dropout(0.5)(h1 + h2 * 2.0)  # a plain op between layer calls
    out = ng.nn.Dense(3)(h)
    model = ng.nn.Model(x, out)
    assert len(model.layers) == 4
    model.compile(ng.optim.Adam(0.05), "cross_entropy", ["accuracy"], target="reference")
    model.fit(X, y, epochs=8, batch_size=30, verbose=0)
    assert model.evaluate(X, y)["accuracy"] > 0.9
    assert "uniform" in model.compiled("train").dump("graph")
    assert "uniform" not in model.compiled("predict").dump("graph")
    # predict equals NumPy with the learned weights (dropout off)
    p = model.state_dict()
    W = {k: v.value.astype(np.float64) for k, v in p.items()}
    a1 = np.maximum(X @ W["0_dense.W"] + W["0_dense.b"], 0)
    a2 = np.tanh(X @ W["1_dense.W"] + W["1_dense.b"])
    want = (a1 + 2 * a2) @ W["3_dense.W"] + W["3_dense.b"]
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-4, atol=1e-4)


def test_functional_model_rejects_foreign_placeholders():
    x = ng.nn.Input((3,))
    other = ng.placeholder(("N", 3), name="other")
    out = ng.nn.Dense(2)(x + other)
    with pytest.raises(ValueError, match="placeholder 'other'"):
        ng.nn.Model(x, out).summary(print_fn=None)


def test_save_load_roundtrip_into_a_fresh_model(tmp_path):
    X, y = _blobs()

    def make():
        return ng.nn.Sequential([ng.nn.Dense(6, activation="relu"), ng.nn.BatchNorm(), ng.nn.Dense(3)],
                                input_shape=(4,))
    a = make()
    a.compile(ng.optim.SGD(0.1), target="reference")
    a.fit(X, y, epochs=2, batch_size=40, verbose=0)
    path = tmp_path / "model.npz"
    a.save(path)
    with np.load(path, allow_pickle=False) as f:
        assert "weights/1_batchnorm.running_var" in f.files  # a whole-model file (test_saving.py)
    b = make()
    b.compile(ng.optim.SGD(0.1), target="reference")
    assert not np.allclose(b.predict(X), a.predict(X))
    b.load(path)
    np.testing.assert_array_equal(b.predict(X), a.predict(X))
    wrong = ng.nn.Sequential([ng.nn.Dense(7), ng.nn.Dense(3)], input_shape=(4,))
    wrong.compile("sgd", target="reference")
    with pytest.raises(Exception, match="0_dense.W"):
        wrong.load(path)


def test_summary_lists_layers_shapes_and_counts():
    model = ng.nn.Sequential([ng.nn.Conv2D(4, 3, padding=1), ng.nn.MaxPool2D(2), ng.nn.Flatten(),
                              ng.nn.Dense(10), ng.nn.BatchNorm()], input_shape=(1, 8, 8))
    text = model.summary(print_fn=None)
    assert "(None, 4, 8, 8)" in text and "(None, 4, 4, 4)" in text and "(None, 64)" in text
    assert "40" in text and "650" in text
    assert "Total params: 730" in text and "Trainable params: 710" in text and "Non-trainable params: 20" in text


def test_binary_cross_entropy_and_mse_models():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 2)).astype(np.float32)
    t = (X[:, 0] + X[:, 1] > 0).astype(np.float32)[:, None]
    for last in (None, "sigmoid"):
        model = ng.nn.Sequential([ng.nn.Dense(1, activation=last)], input_shape=(2,))
        model.compile(ng.optim.Adam(0.1), "binary_cross_entropy", ["accuracy"], target="reference")
        model.fit(X, t, epochs=10, batch_size=50, verbose=0)
        assert model.evaluate(X, t)["accuracy"] > 0.95
    reg = ng.nn.Sequential([ng.nn.Dense(1)], input_shape=(2,))
    reg.compile(ng.optim.SGD(0.1), "mse", target="reference")
    target = (X @ np.array([[1.5], [-2.0]], np.float32) + 0.5).astype(np.float32)
    reg.fit(X, target, epochs=20, batch_size=50, verbose=0)
    assert reg.evaluate(X, target)["loss"] < 1e-3
    np.testing.assert_allclose(reg.layers[0].params["W"].value[:, 0], [1.5, -2.0], atol=0.02)


def test_softmax_output_with_cross_entropy_is_stable():
    X, y = _blobs()
    model = ng.nn.Sequential([ng.nn.Dense(3, activation="softmax")], input_shape=(4,))
    model.compile(ng.optim.SGD(0.5), "cross_entropy", ["accuracy"], target="reference")
    model.fit(X * 100, y, epochs=3, batch_size=40, verbose=0)  # huge logits: no NaN
    probs = model.predict(X)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert np.isfinite(model.evaluate(X * 100, y)["loss"])


def test_custom_loss_and_errors():
    X, y = _blobs()

    def hinge(out, t):
        return ng.mean(ng.relu(1.0 - out[:, 0] * (2.0 * ng.cast(t, "float32") - 1.0)))
    model = ng.nn.Sequential([ng.nn.Dense(1)], input_shape=(4,))
    model.compile(ng.optim.SGD(0.1), hinge, target="reference")
    hist = model.fit(X, (y == 0).astype(np.int32), epochs=3, batch_size=40, verbose=0)
    assert hist["loss"][-1] < hist["loss"][0]
    with pytest.raises(ValueError, match="unknown loss"):
        model.compile("sgd", "hinge_loss")
    fresh = ng.nn.Sequential([ng.nn.Dense(1)], input_shape=(4,))
    with pytest.raises(RuntimeError, match="compile"):
        fresh.fit(X, y)


def test_early_stopping_restores_best_weights():
    X, y = _blobs()
    model = ng.nn.Sequential([ng.nn.Dense(3)], input_shape=(4,))
    model.compile(ng.optim.SGD(0.0), "cross_entropy", target="reference")  # nothing improves
    stop = ng.nn.EarlyStopping("val_loss", patience=1, restore_best_weights=True)
    hist = model.fit(X, y, epochs=10, batch_size=40, validation_data=(X, y), callbacks=[stop], verbose=0)
    assert len(hist["loss"]) == 3 and stop.stopped_epoch == 2


def test_progress_bar_on_a_terminal(capsys, monkeypatch):
    from nngraph.nn import progress
    monkeypatch.setattr(progress, "_is_terminal", lambda stream: True)
    X, y = _blobs(40)
    model = ng.nn.Sequential([ng.nn.Dense(3)], input_shape=(4,))
    model.compile("adam", target="reference")
    model.fit(X, y, epochs=1, batch_size=10, verbose=1)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "4/4" in err


def test_one_line_per_epoch_when_not_a_terminal(capsys):
    X, y = _blobs(40)
    model = ng.nn.Sequential([ng.nn.Dense(3)], input_shape=(4,))
    model.compile("adam", metrics=["accuracy"], target="reference")
    model.fit(X, y, epochs=3, batch_size=10, verbose=1)  # pytest's capture is not a terminal
    out = capsys.readouterr()
    lines = [ln for ln in out.out.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(" (")[0] for ln in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("loss=" in ln and "accuracy=" in ln for ln in lines)
    assert "batch" not in out.err  # no bar


def test_tqdm_is_a_core_dependency():
    import os
    import re
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "pyproject.toml")) as f:
        deps = re.search(r"^dependencies = \[(.*?)\]", f.read(), re.M | re.S).group(1)
    assert '"tqdm' in deps


def test_plain_lines_without_tqdm(capsys, monkeypatch):
    import sys

    from nngraph.nn import progress
    monkeypatch.setattr(progress, "_is_terminal", lambda stream: True)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails
    X, y = _blobs(40)
    model = ng.nn.Sequential([ng.nn.Dense(3)], input_shape=(4,))
    model.compile("adam", target="reference")
    model.fit(X, y, epochs=2, batch_size=10, verbose=1)
    assert capsys.readouterr().out.count("epoch ") == 2


def test_default_target_is_cpu_or_reference_with_a_warning(monkeypatch):
    import warnings

    from nngraph.nn import model as model_mod
    from runtime import targets
    monkeypatch.setattr(targets, "available", lambda t: (False, "target 'cpu' is not available: test"))
    monkeypatch.setattr(model_mod, "_warned_fallback", [])
    with pytest.warns(RuntimeWarning, match="reference"):
        assert model_mod.resolve_target(None) == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model_mod.resolve_target(None) == "reference"  # warned once only
    monkeypatch.setattr(targets, "available", lambda t: (True, ""))
    assert model_mod.resolve_target(None) == "cpu"
