"""A convolutional autoencoder on the 8x8 digit images: Conv2D + MaxPool2D encode to
4 channels of 4x4, the decoder upsamples back to 8x8 and a sigmoid Conv2D gives
the image; trained with the mean squared error against its own input.

The decoder upsamples with a learned transposed convolution (ng.nn.Conv2DTranspose,
stride 2); ng.nn.UpSampling2D(2) followed by a Conv2D is the other common choice.

    python examples/conv_autoencoder.py [--target reference]
"""
import sys

import numpy as np

import nngraph as ng


def build():
    return ng.nn.Sequential([
        ng.nn.Conv2D(8, 3, padding=1, activation="relu"), ng.nn.MaxPool2D(2),     # 8x8x8 -> 8x4x4
        ng.nn.Conv2D(4, 3, padding=1, activation="relu"),                         # code: 4x4x4
        ng.nn.Conv2DTranspose(8, 2, stride=2, activation="relu"),                 # learned 2x: 8x8x8
        ng.nn.Conv2D(1, 3, padding=1, activation="sigmoid")], input_shape=(1, 8, 8), name="autoencoder")


def main(target=None, epochs=10, verbose=1):
    data = ng.data.load_digits(images=True)
    X, Xt = data["train"][0], data["test"][0]     # pixels in [0, 1]
    ng.nn.set_seed(0)
    model = build()
    model.compile(optimizer=ng.optim.Adam(0.01), loss="mse", target=target)
    model.summary()
    history = model.fit(X, X, epochs=epochs, batch_size=32, verbose=verbose)
    test_mse = model.evaluate(Xt, Xt)["loss"]
    baseline = float(np.mean((Xt - X.mean(0)) ** 2))  # predicting the mean image
    print(f"test reconstruction mse {test_mse:.4f} (the mean image gives {baseline:.4f})")
    return history, test_mse, baseline


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--target") + 1] if "--target" in sys.argv else None)
