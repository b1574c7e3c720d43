"""PyTorch style on the digits: a class with layers assigned in __init__ and a
forward; compile/fit as in Keras, or the parameters in a loop of your own.

    python examples/torch_style.py [--target reference]
"""
import sys

import nngraph as ng


class MLP(ng.nn.Module):
    def __init__(self, hidden=(64, 32), classes=10):
        super().__init__()
        self.layers = [ng.nn.Dense(h, activation="relu") for h in hidden]  # a list of layers is found too
        self.dropout = ng.nn.Dropout(0.1)
        self.head = ng.nn.Dense(classes)

    def forward(self, x, training=False):
        for layer in self.layers:
            x = self.dropout(layer(x))  # dropout is on while fit trains, off in evaluate/predict
        return self.head(x)


def main(target=None, epochs=10, verbose=1):
    data = ng.data.load_digits()
    (X, y), val, (Xt, yt) = data["train"], data["val"], data["test"]
    ng.nn.set_seed(0)
    model = MLP()
    model.compile(optimizer=ng.optim.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], target=target)
    model.fit(X, y, epochs=epochs, batch_size=32, validation_data=val, verbose=verbose)
    print(f"{len(model.parameters())} parameter arrays, {model.count_params()} numbers:",
          ", ".join(model.state_dict()))
    scores = model.evaluate(Xt, yt)
    print(f"test accuracy {100 * scores['accuracy']:.2f}%")
    return scores


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--target") + 1] if "--target" in sys.argv else None)
