"""A small LeNet-style CNN on scikit-learn's handwritten digits (1x8x8 images),
with SGD + Nesterov momentum and a 1cycle learning rate.

    python examples/digits_cnn.py [--target reference]
"""
import sys

import nngraph as ng


def main(target=None, epochs=12):
    data = ng.data.load_digits(images=True)
    (X, y), val, (Xt, yt) = data["train"], data["val"], data["test"]
    ng.nn.set_seed(0)
    model = ng.nn.Sequential([
        ng.nn.Conv2D(8, 3, padding=1, activation="relu"), ng.nn.MaxPool2D(2),
        ng.nn.Flatten(), ng.nn.Dense(64, activation="relu"), ng.nn.Dense(10)],
        input_shape=(1, 8, 8), name="digits_cnn")
    model.compile(optimizer=ng.optim.SGD(ng.optim.OneCycle(0.2), momentum=0.9, nesterov=True),
                  loss="cross_entropy", metrics=["accuracy"], target=target)
    model.summary()
    model.fit(X, y, epochs=epochs, batch_size=32, validation_data=val)
    scores = model.evaluate(Xt, yt)
    print(f"test accuracy {100 * scores['accuracy']:.2f}%")
    print("training step stages:", model.compiled("train").stages())
    return scores


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--target") + 1] if "--target" in sys.argv else None)
