"""Functional models with several inputs and outputs: losses per output (list or
dict by output name), loss_weights, targets as a list or dict, predict's list."""
import numpy as np
import pytest

import nngraph as ng

TARGETS = ["reference", "cpu"]


def _data(n=160, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 4)).astype(np.float32)
    b = rng.normal(size=(n, 2)).astype(np.float32)
    cls = (a[:, 0] + b[:, 0] > 0).astype(np.int32) + (a[:, 1] > 0.5).astype(np.int32)
    reg = (a @ np.array([1.0, -1.0, 0.5, 0.0], np.float32) + 2 * b[:, 1])[:, None].astype(np.float32)
    return a, b, cls, reg


def _model():
    a = ng.nn.Input((4,), name="a")
    b = ng.nn.Input((2,), name="b")
    h = ng.nn.Dense(16, activation="tanh", seed=0)(a) + ng.nn.Dense(16, activation="tanh", seed=1)(b)
    cls = ng.nn.Dense(3, name="cls", seed=2)(h)
    reg = ng.nn.Dense(1, name="reg", seed=3)(h)
    return ng.nn.Model([a, b], [cls, reg], name="two_heads")


@pytest.mark.parametrize("tgt", TARGETS)
def test_two_inputs_two_outputs_train_with_losses_by_name(tgt):
    A, B, C, R = _data()
    model = _model()
    assert model.output_names == ["cls", "reg"]
    model.compile(ng.optim.Adam(0.02), loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": 0.5}, metrics={"cls": ["accuracy"]}, target=tgt)
    hist = model.fit([A, B], {"cls": C, "reg": R}, epochs=15, batch_size=32, verbose=0)
    assert set(hist) == {"loss", "cls_loss", "reg_loss", "cls_accuracy"}
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    scores = model.evaluate({"a": A, "b": B}, [C, R])
    assert scores["loss"] == pytest.approx(scores["cls_loss"] + 0.5 * scores["reg_loss"], rel=1e-5)
    assert scores["cls_accuracy"] > 0.8 and scores["reg_loss"] < 0.5
    logits, values = model.predict([A, B], batch_size=50)
    assert logits.shape == (160, 3) and values.shape == (160, 1)
    assert np.mean(logits.argmax(1) == C) == pytest.approx(scores["cls_accuracy"], abs=1e-6)
    assert np.mean((values - R) ** 2) == pytest.approx(scores["reg_loss"], rel=1e-4)


def test_losses_as_a_list_and_a_zero_weight_trains_only_one_head():
    A, B, C, R = _data()
    model = _model()
    model.compile(ng.optim.SGD(0.1), loss=["cross_entropy", "mse"], loss_weights=[0.0, 1.0], target="reference")
    cls_W = model.layers[2].params["W"].value.copy()
    model.fit([A, B], [C, R], epochs=2, batch_size=40, verbose=0)
    np.testing.assert_array_equal(model.layers[2].params["W"].value, cls_W)  # no gradient reaches it
    assert model.layers[2].name == "cls"


def test_wrong_output_names_and_counts_are_named():
    A, B, C, R = _data(20)
    model = _model()
    with pytest.raises(ValueError, match="no output named 'digit'.*cls, reg"):
        model.compile("adam", loss={"digit": "mse"}, target="reference")
    model.compile("adam", loss=["cross_entropy", "mse"], target="reference")
    with pytest.raises(ValueError, match="2 target arrays expected"):
        model.fit([A, B], C, verbose=0)
    with pytest.raises(ValueError, match="missing"):
        model.fit([A, B], {"cls": C}, verbose=0)
    with pytest.raises(ValueError, match="3 given for 2 outputs"):
        model.compile("adam", loss=["mse", "mse", "mse"], target="reference")


def test_dict_outputs_and_nested_model_call():
    x = ng.nn.Input((4,), name="x")
    h = ng.nn.Dense(8, activation="relu")(x)
    inner = ng.nn.Model(x, {"p": ng.nn.Dense(2)(h), "q": ng.nn.Dense(1)(h)})
    assert inner.output_names == ["p", "q"]
    y = ng.nn.Input((4,), name="y")
    p, q = inner(y)  # a model applied to a tensor replays its layers
    outer = ng.nn.Model(y, p * 2.0 + q)
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    pp, qq = inner.predict(X)
    np.testing.assert_allclose(outer.predict(X), pp * 2 + qq, rtol=1e-5, atol=1e-6)
