"""XOR learned by a 2-2-1 network of sigmoid units with gradient descent on the
squared error (the course's setting), written with ng.nn.

    python examples/xor_sigmoid.py
"""
import numpy as np

import nngraph as ng

X = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], np.float32)
Y = np.array([[0], [1], [1], [0]], np.float32)


def train(epochs=2000, seed=1, target=None, verbose=True):
    ng.nn.set_seed(seed)
    # wide uniform weights break the hidden units' symmetry more strongly than the default
    wide = lambda shape, rng: ng.init.uniform(shape, -2.0, 2.0, rng=rng)  # noqa: E731
    model = ng.nn.Sequential([ng.nn.Dense(2, activation="sigmoid", kernel_initializer=wide),
                              ng.nn.Dense(1, activation="sigmoid", kernel_initializer=wide)],
                             input_shape=(2,), name="xor")
    model.compile(ng.optim.SGD(2.0, momentum=0.9), "mse", ["accuracy"], target=target)
    hist = model.fit(X, Y, epochs=epochs, batch_size=4, shuffle=False, verbose=0)
    out = model.predict(X)
    if verbose:
        print(f"after {epochs} epochs: mse {hist['loss'][-1]:.5f}")
        for row, o in zip(X, out[:, 0]):
            print(f"XOR({int(row[0])}, {int(row[1])}) ~ {o:.3f}")
    return model, out


if __name__ == "__main__":
    train()
