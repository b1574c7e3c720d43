"""A training loop written the Theano way: placeholders, parameters, ng.grad and
`updates` given to ng.compile directly (no ng.nn). Softmax regression plus one
hidden layer on the digits, SGD with momentum written by hand.

    python examples/custom_loop.py
"""
import numpy as np

import nngraph as ng


def main(target=None, epochs=10, lr=0.1, momentum=0.9, verbose=True):
    if target is None:
        from nngraph.nn.model import resolve_target
        target = resolve_target(None)
    data = ng.data.load_digits()
    (X, y), (Xt, yt) = data["train"], data["test"]

    x = ng.placeholder(("N", 64), name="x")
    t = ng.placeholder(("N",), "int32", name="t")
    W1 = ng.parameter(ng.init.he_normal((64, 64), seed=0), name="W1")
    b1 = ng.parameter(np.zeros(64, np.float32), name="b1")
    W2 = ng.parameter(ng.init.glorot_normal((64, 10), seed=1), name="W2")
    b2 = ng.parameter(np.zeros(10, np.float32), name="b2")
    params = [W1, b1, W2, b2]

    logits = ng.relu(x @ W1 + b1) @ W2 + b2
    loss = ng.cross_entropy(logits, t)
    acc = ng.mean(ng.cast(ng.equal(ng.argmax(logits, -1), ng.cast(t, "int64")), "float32"))
    grads = ng.grad(loss, params)

    # momentum by hand: v <- m v - lr g; w <- w + v (the course's formula)
    velocities = [ng.parameter(np.zeros_like(p.value), name=f"v_{p.name}", trainable=False) for p in params]
    updates = {}
    for p, g, v in zip(params, grads, velocities):
        v_new = momentum * v - lr * g
        updates[v] = v_new
        updates[p] = p + v_new

    train = ng.compile([x, t], [loss, acc], updates=updates, target=target)
    evaluate = ng.compile([x, t], [loss, acc], target=target)

    for epoch in range(epochs):
        for xb, yb in ng.data.batches(X, y, batch_size=32, shuffle=True, seed=epoch):
            train(xb, yb)
        test_loss, test_acc = evaluate(Xt, yt)
        if verbose:
            print(f"epoch {epoch + 1}: test loss {float(test_loss):.4f}, accuracy {100 * float(test_acc):.2f}%")
    return float(test_acc)


if __name__ == "__main__":
    main()
