"""Keras names and arguments: loss names, validation_split, generators of batches,
kernel_regularizer, clipnorm/clipvalue; unknown names list the known ones."""
import numpy as np
import pytest

import nngraph as ng
from blobs import blobs


def _blobs(n=120, seed=0):
    return blobs(n, seed)


def _dense(units=3, activation=None, **kw):
    return ng.nn.Sequential([ng.nn.Dense(units, activation=activation, seed=0, **kw)], input_shape=(4,))


def _ce(logits, y):
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    return float(np.mean(lse - logits[np.arange(len(y)), y]))


@pytest.mark.parametrize("tgt", ["reference", "cpu"])
def test_keras_loss_names_mean_what_keras_means(tgt):
    X, y = _blobs()
    onehot = np.eye(3, dtype=np.float32)[y]
    sparse = _dense()
    sparse.compile("sgd", "sparse_categorical_crossentropy", target=tgt)
    assert sparse.evaluate(X, y)["loss"] == pytest.approx(_ce(sparse.predict(X).astype(np.float64), y), rel=1e-5)
    probs = _dense(activation="softmax")
    probs.compile("sgd", "categorical_crossentropy", ["accuracy"], target=tgt)
    p = probs.predict(X).astype(np.float64)
    want = float(np.mean(-np.log(p[np.arange(len(y)), y])))
    scores = probs.evaluate(X, onehot)
    assert scores["loss"] == pytest.approx(want, rel=1e-5)
    assert scores["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))
    t = (y == 0).astype(np.float32)[:, None]
    binary = _dense(1, activation="sigmoid")
    binary.compile("sgd", "binary_crossentropy", target=tgt)
    q = binary.predict(X).astype(np.float64)
    assert binary.evaluate(X, t)["loss"] == pytest.approx(np.mean(-t * np.log(q) - (1 - t) * np.log(1 - q)),
                                                          rel=1e-4)


def test_sparse_and_categorical_say_which_targets_they_take():
    X, y = _blobs(20)
    m = _dense()
    m.compile("sgd", "categorical_crossentropy", target="reference")
    with pytest.raises(ng.ShapeError, match="sparse_categorical_crossentropy"):
        m.fit(X, y, verbose=0)
    m.compile("sgd", "sparse_categorical_crossentropy", target="reference")
    with pytest.raises(ng.ShapeError, match="'categorical_crossentropy' for one-hot"):
        m.fit(X, np.eye(3, dtype=np.float32)[y], verbose=0)


def test_unknown_names_list_the_known_ones():
    m = _dense()
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        m.compile("sgd", "crossentropy")
    with pytest.raises(ValueError, match="adam"):
        m.compile("adamw")
    with pytest.raises(ValueError, match="accuracy"):
        m.compile("sgd", metrics=["precision"])
    with pytest.raises(ValueError, match="l1_l2"):
        ng.nn.Dense(3, kernel_regularizer="l3")


def test_validation_split_holds_out_the_last_rows():
    X, y = _blobs(100)
    a, b = _dense(), _dense()
    for m in (a, b):
        m.compile(ng.optim.SGD(0.1), "sparse_categorical_crossentropy", ["accuracy"], target="reference")
    ha = a.fit(X, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
    hb = b.fit(X[:80], y[:80], epochs=2, batch_size=16, validation_data=(X[80:], y[80:]), verbose=0)
    assert ha == hb and "val_accuracy" in ha
    with pytest.raises(ValueError, match="validation_split"):
        a.fit(X, y, validation_split=1.0, verbose=0)


def test_fit_on_a_generator_and_on_a_list_of_batches():
    X, y = _blobs(96)

    def forever():
        while True:
            for s in range(0, 96, 32):
                yield X[s:s + 32], y[s:s + 32]

    a, b, c = _dense(), _dense(), _dense()
    for m in (a, b, c):
        m.compile(ng.optim.SGD(0.1), "sparse_categorical_crossentropy", target="reference")
    ha = a.fit(forever(), epochs=3, steps_per_epoch=3, verbose=0)
    hb = b.fit([(X[s:s + 32], y[s:s + 32]) for s in range(0, 96, 32)].__iter__(), epochs=1, verbose=0)
    batches = ng.data.batches  # an iterable that starts again each epoch

    class Loader:
        def __iter__(self):
            return batches(X, y, batch_size=32)

    hc = c.fit(Loader(), epochs=3, verbose=0, validation_data=Loader())
    np.testing.assert_array_equal(a.layers[0].params["W"].value, c.layers[0].params["W"].value)
    assert ha["loss"] == hc["loss"] and hb["loss"][0] == ha["loss"][0] and len(hc["val_loss"]) == 3
    assert a.evaluate(Loader())["loss"] == pytest.approx(a.evaluate(X, y)["loss"], rel=1e-6)
    spent = iter([(X[:32], y[:32])])
    d = _dense()
    d.compile("sgd", "sparse_categorical_crossentropy", target="reference")
    with pytest.raises(ValueError, match="exhausted.*steps_per_epoch"):
        d.fit(spent, epochs=2, verbose=0)


def test_shuffle_depends_on_seed_and_epoch_so_fit_calls_add_up():
    X, y = _blobs()
    a, b = _dense(), _dense()
    for m in (a, b):
        m.compile(ng.optim.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy", target="reference")
    a.fit(X, y, epochs=3, batch_size=16, verbose=0)
    for _ in range(3):
        b.fit(X, y, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_array_equal(a.layers[0].params["W"].value, b.layers[0].params["W"].value)
    assert a.epochs_done == b.epochs_done == 3


@pytest.mark.parametrize("tgt", ["reference", "cpu"])
def test_clipvalue_and_clipnorm_clip_each_gradient(tgt):
    X, y = _blobs(40)
    W0 = _dense().layers[0]
    results = {}
    for kw in ({}, {"clipvalue": 0.01}, {"clipnorm": 0.05}):
        m = _dense()
        m.compile(ng.optim.SGD(1.0, **kw), "sparse_categorical_crossentropy", target=tgt)
        m.build((None, 4))
        w0 = m.layers[0].params["W"].value.astype(np.float64)
        m.fit(X, y, epochs=1, batch_size=40, shuffle=False, verbose=0)
        results[tuple(kw)] = w0 - m.layers[0].params["W"].value  # = the (clipped) gradient, lr 1
    g = results[()]
    assert np.abs(g).max() > 0.01 and W0 is not None
    np.testing.assert_allclose(results[("clipvalue",)], np.clip(g, -0.01, 0.01), atol=1e-6)
    np.testing.assert_allclose(results[("clipnorm",)], g * 0.05 / np.linalg.norm(g), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="clipnorm must be > 0"):
        ng.optim.Adam(clipnorm=0)


def test_fit_and_evaluate_take_a_plain_list_or_tuple_of_batches():
    """A list (or tuple) of (x, y) pairs with y None is batches, as BatchSource says."""
    X, y = _blobs(96)
    pairs = [(X[s:s + 32], y[s:s + 32]) for s in range(0, 96, 32)]
    a, b, c = _dense(), _dense(), _dense()
    for m in (a, b, c):
        m.compile(ng.optim.SGD(0.1), "sparse_categorical_crossentropy", target="reference")
    ha = a.fit(pairs, epochs=2, verbose=0)
    hb = b.fit(tuple(pairs), epochs=2, verbose=0)
    hc = c.fit(X, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    assert ha["loss"] == hb["loss"] == hc["loss"]
    np.testing.assert_array_equal(a.layers[0].params["W"].value, c.layers[0].params["W"].value)
    two = pairs[:2]  # exactly two batches: still batches, not (inputs, targets)
    assert a.evaluate(two)["loss"] == pytest.approx(a.evaluate(X[:64], y[:64])["loss"], rel=1e-6)


def test_a_list_of_input_arrays_is_still_inputs_not_batches():
    """The structural rule: arrays (even two of them) are never an (x, y) pair, and with
    y given a list is always the inputs."""
    X, y = _blobs(40)
    a, b = ng.nn.Input((4,), name="a"), ng.nn.Input((4,), name="b")
    model = ng.nn.Model([a, b], ng.nn.Dense(3, seed=0)(a + b))
    model.compile(ng.optim.SGD(0.1), "sparse_categorical_crossentropy", target="reference")
    h = model.fit([X, X * 0.5], y, epochs=1, verbose=0)
    assert len(h["loss"]) == 1
    with pytest.raises(ValueError, match="needs targets y"):
        model.fit([X, X * 0.5], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="needs targets y"):
        _dense().compile("sgd", target="reference").fit([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0]], verbose=0)
