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


def test_char_lstm_loss_goes_down_and_it_writes_text():
    import char_lstm
    losses, sample = char_lstm.main(target="cpu", steps=20, verbose=0, generate_chars=20)
    assert len(losses) == 10 and losses[-1] < 0.8 * losses[0]
    text = char_lstm.corpus()
    assert sample.startswith(text[:48]) and len(sample) == 48 + 20
    assert set(sample) <= set(text)                          # characters of the vocabulary only
    again = char_lstm.main(target="cpu", steps=20, verbose=0, generate_chars=20)[1]
    assert again == sample                                   # a seeded sample
