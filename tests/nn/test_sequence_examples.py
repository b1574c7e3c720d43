"""The sequence-model examples run and learn (small settings)."""
import os
import sys

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
sys.path.insert(0, os.path.abspath(EXAMPLES))


def test_tiny_transformer_learns_the_majority_token():
    import tiny_transformer
    history, scores = tiny_transformer.main(target="reference", epochs=4, verbose=0, n=256)
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert scores["accuracy"] > 0.5   # chance is about 0.25
