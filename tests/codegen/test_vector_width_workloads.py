"""The benchmark's CPU kernels (tanh/sigmoid chain and its gradient, softmax
cross-entropy forward and backward, an MLP training step) compiled for this host
and, through NNGRAPH_CPU_FEATURES=-avx512f, for a host with AVX2 only (256-bit
vectors, no vscalef, no 14-bit reciprocal estimate): every value against NumPy
in float64. Whatever depends on the vector width (the exp scaling, the division
by reciprocal estimate, tile and split sizes) must be right on both."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKLOADS = r"""
import sys
import numpy as np
import nngraph as ng
from codegen.host import host_facts
from codegen.llvm import target

want_avx512 = sys.argv[1] == "native" and target.has_feature("avx512f")
assert target.has_feature("avx512f") == want_avx512, target.features()
rng = np.random.default_rng(7)


def close(got, want, what, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol, err_msg=what)


# sum(tanh(x*a + b) * sigmoid(x)) and its gradient: one fused loop, tanh and
# sigmoid each with one exp and one division (a reciprocal estimate with AVX-512)
x = ng.placeholder(("N",), name="x")
f = (ng.tanh(x * 0.7 + 0.1) * ng.sigmoid(x)).sum()
(gx,) = ng.grad(f, [x])
chain = ng.compile([x], [f, gx], target="cpu")
X = np.concatenate([rng.standard_normal(40000) * 4, [0.0, -0.0, 30.0, -30.0, 100.0, -100.0]]).astype(np.float32)
Xd = X.astype(np.float64)
t, s = np.tanh(Xd * np.float32(0.7) + np.float32(0.1)), 1 / (1 + np.exp(-Xd))
got_f, got_g = chain(X)
close(got_f, (t * s).sum(), "chain value", rtol=1e-5)
close(got_g, (1 - t * t) * np.float32(0.7) * s + t * s * (1 - s), "chain gradient")
asm = chain.dump("asm")
assert ("zmm" in asm) == want_avx512, "vector registers of the other width"
assert ("vrcp14ps" in asm) == want_avx512 and ("vdivps" in asm) != want_avx512, "division of the wrong kind"

# tanh and sigmoid within one ulp of +-1 and 1 where they saturate, never beyond
big = np.linspace(9.5, 60, 5001).astype(np.float32)
u = ng.placeholder(("N",), name="u")
sat = ng.compile([u], [ng.tanh(u), ng.tanh(-u), ng.sigmoid(u)], target="cpu")
for got, want in zip(sat(big), (1.0, -1.0, 1.0)):
    assert np.all(np.abs(got[big > 17.5] - want) <= 2 ** -24) and np.all(np.abs(got) <= 1), got[got != want][:5]

# softmax cross-entropy, forward and backward
z = ng.placeholder(("N", 1000), name="z")
y = ng.placeholder(("N",), "int32", name="y")
loss = ng.cross_entropy(z, y)
(gz,) = ng.grad(loss, [z])
ce = ng.compile([z, y], [loss, gz], target="cpu")
Z = (rng.standard_normal((64, 1000)) * 3).astype(np.float32)
Y = rng.integers(0, 1000, 64).astype(np.int32)
zd = Z.astype(np.float64)
p = np.exp(zd - zd.max(1, keepdims=True))
p /= p.sum(1, keepdims=True)
got_l, got_gz = ce(Z, Y)
close(got_l, np.mean(-np.log(p[np.arange(64), Y])), "cross-entropy")
p[np.arange(64), Y] -= 1
close(got_gz, p / 64, "cross-entropy gradient", atol=1e-8)

# an MLP training step (GEMMs with bias/relu epilogues, softmax cross-entropy, SGD)
sizes, B = (100, 64, 32, 10), 48
Ws = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
bs = [np.full(b, 0.01, np.float32) for b in sizes[1:]]
xin = ng.placeholder(("N", sizes[0]), name="x")
yin = ng.placeholder(("N",), "int32", name="y")
PW = [ng.parameter(w.copy(), name=f"W{i}") for i, w in enumerate(Ws)]
Pb = [ng.parameter(b.copy(), name=f"b{i}") for i, b in enumerate(bs)]
h = xin
for i, (W, b) in enumerate(zip(PW, Pb)):
    h = h @ W + b
    h = ng.relu(h) if i < len(PW) - 1 else h
loss = ng.cross_entropy(h, yin)
params = PW + Pb
step = ng.compile([xin, yin], loss, updates={q: q - 0.1 * g for q, g in zip(params, ng.grad(loss, params))},
                  target="cpu")
XM = rng.standard_normal((B, sizes[0])).astype(np.float32)
YM = rng.integers(0, 10, B).astype(np.int32)
W64, b64 = [w.astype(np.float64) for w in Ws], [v.astype(np.float64) for v in bs]
hs, hh = [XM.astype(np.float64)], XM.astype(np.float64)
for i in range(3):
    hh = hh @ W64[i] + b64[i]
    hh = np.maximum(hh, 0) if i < 2 else hh
    hs.append(hh)
e = np.exp(hh - hh.max(1, keepdims=True))
pr = e / e.sum(1, keepdims=True)
want_loss = np.mean(-np.log(pr[np.arange(B), YM]))
g = pr
g[np.arange(B), YM] -= 1
g /= B
for i in (2, 1, 0):
    gW, gb = hs[i].T @ g, g.sum(0)
    g = (g @ W64[i].T) * (hs[i] > 0)
    W64[i] -= 0.1 * gW
    b64[i] -= 0.1 * gb
close(step(XM, YM), want_loss, "MLP loss")
for i in range(3):
    close(PW[i].value, W64[i], f"updated W{i}", atol=1e-5)
    close(Pb[i].value, b64[i], f"updated b{i}", atol=1e-5)
print("ok", host_facts().vector_bits)
"""


@pytest.mark.parametrize("host", ["native", "avx2"])
def test_benchmark_kernels_match_numpy_at_each_vector_width(host, tmp_path):
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(tmp_path),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NNGRAPH_VECTOR_BITS", None)
    env.pop("NNGRAPH_CPU_FEATURES", None)
    if host == "avx2":
        env["NNGRAPH_CPU_FEATURES"] = "-avx512f"
    p = subprocess.run([sys.executable, "-c", WORKLOADS, host], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and "ok" in p.stdout, p.stdout[-2000:] + p.stderr[-4000:]
    if host == "avx2":
        assert p.stdout.split()[-1] == "256"
