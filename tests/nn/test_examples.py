"""The examples run and do what they say (small settings, reference target)."""
import os
import sys

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
sys.path.insert(0, os.path.abspath(EXAMPLES))


def test_xor_step_neurons(capsys):
    import xor_step
    xor_step.main()
    assert "XOR(1, 1) = 0" in capsys.readouterr().out


def test_xor_learned_with_sigmoid_units():
    import xor_sigmoid
    _, out = xor_sigmoid.train(epochs=400, target="reference", verbose=False)
    np.testing.assert_array_equal(np.round(out[:, 0]), [0, 1, 1, 0])


def test_custom_loop_learns_the_digits():
    pytest.importorskip("sklearn")
    import custom_loop
    assert custom_loop.main(target="reference", epochs=3, verbose=False) > 0.9


# ---------------------------------------------------------------- the four styles on the digits
@pytest.mark.parametrize("tgt", ["reference", "cpu"])
def test_tf1_style_graph_learns_the_digits(tgt):
    pytest.importorskip("sklearn")
    import tf1_graph
    assert tf1_graph.main(target=tgt, epochs=2, verbose=False) > 0.85


def test_pytorch_style_module_learns_the_digits(capsys):
    pytest.importorskip("sklearn")
    import torch_style
    scores = torch_style.main(target="reference", epochs=3, verbose=0)
    assert scores["accuracy"] > 0.85
    assert "layers.0.W, layers.0.b, layers.1.W, layers.1.b, head.W, head.b" in capsys.readouterr().out


def test_keras_functional_two_outputs_learns_both_and_saves_whole():
    pytest.importorskip("sklearn")
    import keras_two_outputs
    scores, same = keras_two_outputs.main(target="reference", epochs=3, verbose=0)
    assert scores["digit_accuracy"] > 0.85 and scores["even_accuracy"] > 0.85 and same
    assert scores["loss"] > scores["digit_loss"]  # weighted sum plus the l2 penalty


def test_conv_autoencoder_beats_the_mean_image():
    pytest.importorskip("sklearn")
    import conv_autoencoder
    history, test_mse, baseline = conv_autoencoder.main(target="reference", epochs=2, verbose=0)
    assert history["loss"][-1] < history["loss"][0] and test_mse < 0.6 * baseline
