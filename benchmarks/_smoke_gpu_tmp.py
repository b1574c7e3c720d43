"""Smoke test on a real GPU: a few graphs against the reference."""
import numpy as np, nngraph as ng, time, traceback
x = ng.placeholder(("N", 6), name="x")
y = ng.placeholder(("N",), dtype="int32", name="y")
W = ng.parameter(np.random.rand(6, 4).astype(np.float32), name="W")
b = ng.parameter(np.zeros(4, np.float32), name="b")
h = ng.relu(x @ W + b)
outs = [ng.tanh(x) * 2 + 1, ng.softmax(x), h, ng.sum(x, 1), ng.max(x, 0), ng.argmax(x, 1), ng.log1p(ng.abs(x)) ** 1.5, ng.softplus(x), ng.sigmoid(x)]
X = np.random.randn(37, 6).astype(np.float32); Y = np.arange(37).astype(np.int32) % 4
for o in outs:
    try:
        fn = ng.compile([x], o, target="gpu")
        r = fn(X)
        ref = ng.compile([x], o, target="reference")(X)
        print("ok", o.op, float(np.abs(r - ref).max()))
    except Exception:
        traceback.print_exc()
loss = ng.cross_entropy(h, y)
gW, gb = ng.grad(loss, [W, b])
fn = ng.compile([x, y], loss, {W: W - 0.1 * gW, b: b - 0.1 * gb}, target="gpu")
W0, b0 = W.value.copy(), b.value.copy()
l1 = fn(X, Y); W1, b1 = W.value.copy(), b.value.copy()
W.value, b.value = W0, b0
fr = ng.compile([x, y], loss, {W: W - 0.1 * gW, b: b - 0.1 * gb}, target="reference")
l2 = fr(X, Y)
print("step", l1, l2, np.abs(W1 - W.value).max(), np.abs(b1 - b.value).max())
u = ng.dropout(x, 0.5, seed=3)
fu = ng.compile([x], u, target="gpu"); fr2 = ng.compile([x], u, target="reference")
print("dropout equal:", np.array_equal(fu(X), fr2(X)))
