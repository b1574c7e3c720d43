"""TensorFlow 1 style on the digits: placeholders, variables, a loss, an optimiser's
minimize() giving the update graph, and a "session" that is one compiled function,
fed by placeholder name.

The batch size is None, as in TF1: the two None sizes are joined by the loss (which
needs logits and labels of one batch), and a call whose arrays disagree there raises
ng.InputError naming both inputs and the loss's line.

    python examples/tf1_graph.py [--target reference]
"""
import sys

import numpy as np

import nngraph as ng

BATCH = None


def main(target="cpu", epochs=10, verbose=True):
    data = ng.data.load_digits()
    (X, y), (Xt, yt) = data["train"], data["test"]

    # the graph
    x = ng.placeholder((BATCH, 64), name="x")
    labels = ng.placeholder((BATCH,), "int32", name="labels")
    W1 = ng.parameter(ng.init.he_normal((64, 64), seed=0), name="W1")
    b1 = ng.parameter(np.zeros(64, np.float32), name="b1")
    W2 = ng.parameter(ng.init.glorot_uniform((64, 10), seed=1), name="W2")
    b2 = ng.parameter(np.zeros(10, np.float32), name="b2")
    logits = ng.relu(x @ W1 + b1) @ W2 + b2
    loss = ng.cross_entropy(logits, labels)
    correct = ng.equal(ng.argmax(logits, -1), ng.cast(labels, "int64"))
    accuracy = ng.mean(ng.cast(correct, "float32"))

    # tf.train.AdamOptimizer(0.01).minimize(loss): the updates of one step
    optimizer = ng.optim.Adam(0.01)
    train_op = optimizer.minimize(loss, [W1, b1, W2, b2])

    # sess.run([loss, train_op], feed_dict=...): one compiled call does forward, backward, update
    train = ng.compile([x, labels], loss, updates=train_op, target=target)
    evaluate = ng.compile([x, labels], [loss, accuracy], target=target)
    for epoch in range(epochs):
        for xb, yb in ng.data.batches(X, y, batch_size=32, shuffle=True, seed=epoch):
            train(x=xb, labels=yb)
        test_loss, test_acc = evaluate(x=Xt, labels=yt)
        if verbose:
            print(f"epoch {epoch + 1}: test loss {float(test_loss):.4f}, accuracy {100 * float(test_acc):.2f}%")
    return float(test_acc)


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--target") + 1] if "--target" in sys.argv else "cpu")
