"""An MLP on scikit-learn's handwritten digits (8x8), Keras-style.

    python examples/digits_mlp.py [--target reference]
"""
import sys

import nngraph as ng


def main(target=None, epochs=10):
    data = ng.data.load_digits()
    (X, y), val, (Xt, yt) = data["train"], data["val"], data["test"]
    ng.nn.set_seed(0)
    model = ng.nn.Sequential([
        ng.nn.Dense(64, activation="relu"),
        ng.nn.Dropout(0.1),
        ng.nn.Dense(10)], input_shape=(64,), name="digits_mlp")
    model.compile(optimizer=ng.optim.Adam(0.01), loss="cross_entropy", metrics=["accuracy"], target=target)
    model.summary()
    model.fit(X, y, epochs=epochs, batch_size=32, validation_data=val)
    scores = model.evaluate(Xt, yt)
    print(f"test accuracy {100 * scores['accuracy']:.2f}%  (compile: {model.compile_seconds})")
    return scores


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--target") + 1] if "--target" in sys.argv else None)
