"""NNGRAPH_CPU_FEATURES=-avx512f on an AVX-512 CPU is a run as on an AVX2 machine:
code without AVX-512 (an MLP step, the same values as the default build), the BLAS
held to AVX2 (MKL's code path, OpenBLAS's core type), and every per-host measured
verdict (the BLAS choice, conv layouts) keyed by the features so that such a run
never reuses a verdict measured with AVX-512, nor the reverse."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from codegen import host
from codegen.llvm import blas, blas_choice, mkl
from runtime import conv_choice

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST_AVX512 = "avx512f" in host.cpuinfo().get("flags", "").split()
AVX512_TOKENS = ("zmm", "%k1", "%k2", "%k3", "ymm16", "ymm17", "ymm31", "{1to", "vrcp14", "vscalef")

MLP_STEP = r"""
import json, sys
import numpy as np
import nngraph as ng
from codegen.llvm import blas, target
rng = np.random.default_rng(3)
sizes, B = (784, 512, 256, 10), 128
Ws = [ng.parameter((rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32), name=f"W{i}")
      for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
bs = [ng.parameter(np.full(b, 0.01, np.float32), name=f"b{i}") for i, b in enumerate(sizes[1:])]
x, y = ng.placeholder(("N", 784), name="x"), ng.placeholder(("N",), "int32", name="y")
h = x
for i, (W, b) in enumerate(zip(Ws, bs)):
    h = h @ W + b
    h = ng.relu(h) if i < 2 else h
loss = ng.cross_entropy(h, y)
params = Ws + bs
step = ng.compile([x, y], loss, updates={p: p - 0.05 * g for p, g in zip(params, ng.grad(loss, params))},
                  target="cpu")
X, Y = rng.standard_normal((B, 784)).astype(np.float32), rng.integers(0, 10, B).astype(np.int32)
losses = [float(step(X, Y)) for _ in range(3)]
np.savez(sys.argv[1], losses=np.array(losses), **{p.name: p.value for p in params})
print(json.dumps({"asm": step.dump("asm"), "avx512f": target.has_feature("avx512f"), "blas": blas.describe()}))
"""


def _mlp_step(tmp_path, mode):
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(tmp_path / f"cache-{mode}"),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("NNGRAPH_CPU_FEATURES", "NNGRAPH_VECTOR_BITS", "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE"):
        env.pop(k, None)
    if mode == "avx2":
        env["NNGRAPH_CPU_FEATURES"] = "-avx512f"
    out = tmp_path / f"{mode}.npz"
    p = subprocess.run([sys.executable, "-c", MLP_STEP, str(out)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), dict(np.load(out))


def test_mlp_step_without_avx512_has_no_avx512_code_and_the_default_builds_values(tmp_path):
    native, native_values = _mlp_step(tmp_path, "native")
    avx2, avx2_values = _mlp_step(tmp_path, "avx2")
    assert not avx2["avx512f"]
    assert not [t for t in AVX512_TOKENS if t in avx2["asm"]], "AVX-512 instructions in the -avx512f build"
    assert "ymm" in avx2["asm"], "the -avx512f build is not vectorised for AVX2"
    assert native["avx512f"] == HOST_AVX512
    assert ("zmm" in native["asm"]) == HOST_AVX512, "the default build does not use the CPU's widest vectors"
    assert set(native_values) == set(avx2_values)
    for name in native_values:
        np.testing.assert_allclose(avx2_values[name], native_values[name], rtol=1e-5, atol=1e-6, err_msg=name)
    if HOST_AVX512:
        assert "MKL_ENABLE_INSTRUCTIONS=AVX2" in avx2["blas"] or "core type Haswell" in avx2["blas"] \
            or "core type Zen" in avx2["blas"], avx2["blas"]


def test_blas_choice_key_follows_the_feature_overrides(monkeypatch):
    monkeypatch.delenv("NNGRAPH_CPU_FEATURES", raising=False)
    default = blas_choice.host_key(["same settings"])
    monkeypatch.setenv("NNGRAPH_CPU_FEATURES", "-avx512f")
    assert blas_choice.host_key(["same settings"]) != default


def test_conv_layout_key_follows_the_feature_overrides(monkeypatch):
    monkeypatch.delenv("NNGRAPH_CPU_FEATURES", raising=False)
    default = conv_choice.host_key.__wrapped__()
    monkeypatch.setenv("NNGRAPH_CPU_FEATURES", "-avx512f")
    assert conv_choice.host_key.__wrapped__() != default


def test_the_mkl_instruction_cap_is_part_of_the_blas_choice_key(monkeypatch):
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    default = blas.choice_key_parts()
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    assert blas.choice_key_parts() != default


def _facts(bits):
    return host.HostFacts(cpu_model="x", vendor="GenuineIntel", logical_cpus=2, physical_cores=2,
                          vector_bits=bits, ghz=2.0, l1d=1, l2=1, l3=1, thread_start_ns=1.0)


@pytest.mark.parametrize("cpu_bits, effective_bits, off", [(512, 256, True), (512, 512, False), (256, 256, False)])
def test_avx512_turned_off(monkeypatch, cpu_bits, effective_bits, off):
    feats = {f: cpu_bits >= 512 for f in host.AVX512} | {"avx2": True, "fma": True}
    monkeypatch.setattr(host, "llvm_host_features", lambda: feats)
    monkeypatch.setattr(host, "host_facts", lambda: _facts(effective_bits))
    assert host.avx512_turned_off() == off


def test_a_users_openblas_type_or_mkl_cap_is_left_alone(monkeypatch):
    monkeypatch.setattr(host, "avx512_turned_off", lambda: True)
    monkeypatch.delenv("NNGRAPH_BLAS_CORETYPE", raising=False)
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    assert blas.core_type_choice() in ("Haswell", "Zen") and mkl.held_to_avx2()
    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX512")
    assert blas.core_type_choice() == "" and not mkl.held_to_avx2()
    monkeypatch.setattr(host, "avx512_turned_off", lambda: False)
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS")
    assert blas.core_type_choice() == "" and not mkl.held_to_avx2()


BLAS_PATH = r"""
import json
from codegen.llvm import blas
out = {"describe": blas.describe(), "core": blas.core_type_choice()}
if blas.chosen_blas() == "mkl":
    out["path"] = blas.mkl_instance().code_path()
print(json.dumps(out))
"""


@pytest.mark.skipif(not HOST_AVX512, reason="holding the BLAS to AVX2 is a change only on a CPU with AVX-512")
@pytest.mark.parametrize("which", ["openblas", "mkl"])
def test_the_blas_is_held_to_avx2(which, tmp_path):
    if which == "mkl" and not mkl.installed():
        pytest.skip("the mkl wheel is not installed (pip install 'nngraph[mkl]')")
    outs = []
    for features in ("", "-avx512f"):
        env = dict(os.environ, NNGRAPH_BLAS=which, NNGRAPH_CPU_FEATURES=features, NNGRAPH_CACHE_DIR=str(tmp_path),
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for k in ("MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE", "NNGRAPH_BLAS_CORETYPE", "MKL_CBWR"):
            env.pop(k, None)
        p = subprocess.run([sys.executable, "-c", BLAS_PATH], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        outs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    default, held = outs
    if which == "mkl":
        assert default["path"].startswith("AVX512") and held["path"] == "AVX2", outs
        assert "MKL_ENABLE_INSTRUCTIONS=AVX2" in held["describe"] and "MKL_ENABLE" not in default["describe"]
    else:
        assert default["core"] == "" and held["core"] in ("Haswell", "Zen"), outs
        assert f"core type {held['core']}" in held["describe"] and "core type Haswell" not in default["describe"]
