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
