"""A Keras functional model with two outputs on the digits: which digit it is
(10 classes) and whether it is even (one logit), trained together with a loss per
output and loss weights, then saved and loaded back whole.

    python examples/keras_two_outputs.py [--target reference]
"""
import os
import sys
import tempfile

import numpy as np

import nngraph as ng


def build():
    image = ng.nn.Input((64,), name="image")
    h = ng.nn.Dense(64, activation="relu", kernel_regularizer=ng.nn.l2(1e-4))(image)
    h = ng.nn.Dropout(0.1)(h)
    digit = ng.nn.Dense(10, name="digit")(h)
    even = ng.nn.Dense(1, name="even")(h)
    return ng.nn.Model(image, [digit, even], name="digit_and_parity")


def main(target=None, epochs=10, verbose=1):
    data = ng.data.load_digits()
    (X, y), (Xt, yt) = data["train"], data["test"]
    ng.nn.set_seed(0)
    model = build()
    model.compile(optimizer=ng.optim.Adam(0.01, clipnorm=1.0),
                  loss={"digit": "sparse_categorical_crossentropy", "even": "binary_crossentropy"},
                  loss_weights={"digit": 1.0, "even": 0.5},
                  metrics={"digit": ["accuracy"], "even": ["accuracy"]}, target=target)
    model.summary()
    targets = {"digit": y, "even": (y % 2 == 0).astype(np.float32)[:, None]}
    model.fit(X, targets, epochs=epochs, batch_size=32, validation_split=0.1, verbose=verbose)
    scores = model.evaluate(Xt, {"digit": yt, "even": (yt % 2 == 0).astype(np.float32)[:, None]})
    print(", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    digit_logits, even_logit = model.predict(Xt[:5])
    print("first test digits:", digit_logits.argmax(1), "even:", (even_logit[:, 0] > 0).astype(int))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "two_outputs.npz")
        model.save(path)
        again = ng.nn.load_model(path)
        same = all(np.array_equal(a, b) for a, b in zip(again.predict(Xt), model.predict(Xt)))
    print("saved and loaded back:", "same predictions" if same else "DIFFERENT predictions")
    return scores, same


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--target") + 1] if "--target" in sys.argv else None)
