"""Mistakes inside fit are reported in the user's terms: the layer, the shapes and the
fix, not an error about the labels or an argument fit does not take."""
import numpy as np
import pytest

import nngraph as ng


def _images(n=20):
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 8, 8)).astype(np.float32), (np.arange(n) % 10).astype(np.int64)


@pytest.mark.parametrize("tgt", ["reference", "cpu"])
def test_forgotten_flatten_names_the_dense_layer_and_the_fix(tgt):
    X, y = _images()
    model = ng.nn.Sequential([ng.nn.Conv2D(16, 3, padding=1), ng.nn.MaxPool2D(2), ng.nn.Dense(10, name="head")])
    model.compile("adam", "sparse_categorical_crossentropy", target=tgt)
    with pytest.raises(ng.ShapeError) as e:
        model.fit(X, y, verbose=0)
    msg = str(e.value)
    assert "head: Dense expects 2-d input" in msg and "(N, 16, 4, 4)" in msg and "add Flatten()" in msg
    assert "label" not in msg and "cast_inputs" not in msg


def test_targets_that_do_not_fit_the_output_name_both_shapes():
    X, y = _images()
    model = ng.nn.Sequential([ng.nn.Flatten(), ng.nn.Dense(10, name="logits")])
    model.compile("adam", "cross_entropy", target="reference")
    with pytest.raises(ng.ShapeError, match=r"output 'logits' \(N, 10\) float32 with targets \(N, 5\) float32"):
        model.fit(X, np.eye(5, dtype=np.float32)[y % 5], verbose=0)


def test_data_of_the_wrong_shape_names_the_input_and_both_shapes():
    X, y = _images()
    model = ng.nn.Sequential([ng.nn.Flatten(), ng.nn.Dense(10)], input_shape=(1, 8, 8))
    model.compile("adam", target="reference")
    with pytest.raises(ValueError, match=r"input 'x' takes examples of shape \(1, 8, 8\).*\(20, 64\)"):
        model.fit(X.reshape(20, 64), y, verbose=0)
