"""XOR with hand-set step neurons, as in the course: two hidden units compute
OR and NAND (AND NOT), the output unit ANDs them. No learning, just the graph.

    python examples/xor_step.py
"""
import numpy as np

import nngraph as ng

X = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], np.float32)
WANT = np.array([0, 1, 1, 0], np.float32)

x = ng.placeholder(("N", 2), name="x")
# hidden unit 1: x1 + x2 - 0.5 >= 0 (OR); hidden unit 2: -x1 - x2 + 1.5 >= 0 (NAND)
W1 = ng.parameter(np.array([[1.0, -1.0], [1.0, -1.0]], np.float32), name="W1")
b1 = ng.parameter(np.array([-0.5, 1.5], np.float32), name="b1")
# output: h1 + h2 - 1.5 >= 0 (AND)
W2 = ng.parameter(np.array([[1.0], [1.0]], np.float32), name="W2")
b2 = ng.parameter(np.array([-1.5], np.float32), name="b2")

h = ng.step(x @ W1 + b1)
y = ng.step(h @ W2 + b2)[:, 0]


def main():
    fn = ng.compile([x], y, target="reference")
    out = fn(X)
    for row, o in zip(X, out):
        print(f"XOR({int(row[0])}, {int(row[1])}) = {int(o)}")
    assert np.array_equal(out, WANT), out
    print(fn.dump("opt"))


if __name__ == "__main__":
    main()
