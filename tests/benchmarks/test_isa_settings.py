"""benchmarks/isa.py's `--isa avx2` plumbing (no timing): the environment each
framework's process gets, that the three benchmarks hand it to each process, the
checks' parsing, and two real checks in probe processes (nngraph, NumPy)."""
import json
import os
import subprocess
import sys
import types

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks")
sys.path.insert(0, BENCH)

import isa  # noqa: E402

BASE = {"PATH": "/usr/bin", "XLA_FLAGS": "--xla_cpu_use_thunk_runtime=true", "PYTENSOR_FLAGS": "floatX=float32"}
CAPS = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": isa.openblas_core_type()}


def test_native_leaves_the_environment_as_it_is():
    for fw in isa.FRAMEWORKS + ("floor",):
        assert isa.framework_env(fw, "native", BASE) == BASE


@pytest.mark.parametrize("fw", isa.FRAMEWORKS + ("floor",))
def test_every_process_gets_the_blas_and_numpy_caps(fw):
    env = isa.framework_env(fw, "avx2", BASE)
    assert {k: env[k] for k in CAPS} == CAPS
    assert CAPS["OPENBLAS_CORETYPE"] in ("Haswell", "Zen")
    assert set(env.get("NPY_DISABLE_CPU_FEATURES", "").split()) == set(isa.numpy_avx512_targets())
    assert env["PATH"] == "/usr/bin"


def test_each_framework_gets_its_own_settings():
    ng = isa.framework_env("nngraph", "avx2", BASE)
    assert ng["NNGRAPH_CPU_FEATURES"] == "-avx512f" and ng["NNGRAPH_BLAS"] == "auto"
    for fw in ("torch", "torch.compile"):
        t = isa.framework_env(fw, "avx2", BASE)
        assert (t["ATEN_CPU_CAPABILITY"], t["ONEDNN_MAX_CPU_ISA"], t["TORCHINDUCTOR_CPP_MARCH"]) == ("avx2", "AVX2", "haswell")
    assert isa.framework_env("jax", "avx2", BASE)["XLA_FLAGS"] == "--xla_cpu_use_thunk_runtime=true --xla_cpu_max_isa=AVX2"
    flags = isa.framework_env("pytensor", "avx2", BASE)["PYTENSOR_FLAGS"].split(",")
    assert flags[:2] == ["floatX=float32", "gcc__cxxflags=-march=haswell"] and flags[2].startswith("base_compiledir=")
    ort = isa.framework_env("onnxruntime", "avx2", BASE)
    assert set(ort) - set(BASE) <= set(CAPS) | {"NPY_DISABLE_CPU_FEATURES"}
    others = [isa.framework_env(fw, "avx2", BASE) for fw in ("numpy", "jax", "torch", "pytensor", "onnxruntime")]
    assert not any("NNGRAPH_CPU_FEATURES" in e for e in others)
    assert not any("ATEN_CPU_CAPABILITY" in e for e in others[:2] + others[3:])


def test_a_users_own_settings_are_kept():
    env = isa.framework_env("nngraph", "avx2", {"NNGRAPH_CPU_FEATURES": "+fma", "NNGRAPH_BLAS": "mkl"})
    assert env["NNGRAPH_CPU_FEATURES"] == "+fma,-avx512f" and env["NNGRAPH_BLAS"] == "mkl"


def test_bad_isa_or_framework_is_a_clear_error():
    with pytest.raises(ValueError, match="--isa must be one of native, avx2, got 'avx512'"):
        isa.framework_env("nngraph", "avx512", BASE)
    with pytest.raises(ValueError, match="no ISA settings for framework 'tensorflow'"):
        isa.framework_env("tensorflow", "avx2", BASE)


def _fake_run(seen, stdout):
    def run(args, env=None, **kw):
        seen.append((args, env))
        return types.SimpleNamespace(returncode=0, stdout=stdout(args), stderr="")
    return run


def test_run_py_gives_each_worker_its_frameworks_environment(monkeypatch):
    import run
    seen = []
    monkeypatch.setattr(run.subprocess, "run", _fake_run(seen, lambda a: json.dumps(
        {"column": a[a.index("--worker") + 1], "results": {}, "notes": {}, "load": [0, 0]})))
    columns = ["nngraph cpu", "NumPy", "torch.compile", "JAX jit", "PyTensor"]
    base = dict(BASE, NNGRAPH_CACHE_DIR="/tmp/the-runs-cache")
    run.run_rounds(columns, ["w"], 1, 0.1, base, "avx2")
    envs = {a[a.index("--worker") + 1]: env for a, env in seen}
    assert set(envs) == set(columns) | {"floor"}
    for column, fw in (("nngraph cpu", "nngraph"), ("NumPy", "numpy"), ("torch.compile", "torch"),
                       ("JAX jit", "jax"), ("PyTensor", "pytensor"), ("floor", "floor")):
        assert envs[column] == isa.framework_env(fw, "avx2", base), column
    assert {env["NNGRAPH_CACHE_DIR"] for env in envs.values()} == {"/tmp/the-runs-cache"}


def test_lstm_gives_each_variant_its_frameworks_environment(monkeypatch):
    import lstm
    seen = []
    monkeypatch.setattr(lstm.subprocess, "run", _fake_run(seen, lambda a: '{"variant": "x"}'))
    a = types.SimpleNamespace(T=2, N=2, F=4, H=4, steps=1, warmup=0, isa="avx2")
    for which in ("layer", "scan", "torch", "jax"):
        lstm._in_process_of_its_own(a, which)
    envs = {args[args.index("--only") + 1]: env for args, env in seen}
    assert envs["layer"]["NNGRAPH_CPU_FEATURES"] == envs["scan"]["NNGRAPH_CPU_FEATURES"] == "-avx512f"
    assert envs["torch"]["ATEN_CPU_CAPABILITY"] == "avx2" and "NNGRAPH_CPU_FEATURES" not in envs["torch"]
    assert envs["jax"]["XLA_FLAGS"].endswith("--xla_cpu_max_isa=AVX2")


def test_resnet_engines_get_their_settings_and_threads():
    from onnx_resnet50 import ENGINES, engine_env
    assert ENGINES == ("onnxruntime", "nngraph")
    ng = engine_env("nngraph", "avx2", 1, BASE)
    assert (ng["NNGRAPH_CPU_FEATURES"], ng["NNGRAPH_NUM_THREADS"], ng["NNGRAPH_BLAS_THREADS"]) == ("-avx512f", "1", "1")
    ort = engine_env("onnxruntime", "avx2", None, BASE)
    assert "NNGRAPH_CPU_FEATURES" not in ort and ort["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    assert engine_env("nngraph", "native", None, BASE) == BASE


def test_avx512_tokens_in_assembly():
    for asm in ("vaddps %zmm1, %zmm2, %zmm3", "vmovups (%rax), %ymm17", "vaddps %ymm1, %ymm2, %ymm3 {%k1}",
                "vbroadcastss (%rax){1to8}, %ymm1", "vrcp14ps %ymm1, %ymm2", "vpternlogd $0x96, %ymm1, %ymm2, %ymm3"):
        assert isa.avx512_in(asm), asm
    assert isa.avx512_in("vfmadd231ps %ymm15, %ymm1, %ymm0\n\tvdivps %ymm1, %ymm2, %ymm3\n\tkmovw %eax") == ""


def test_verbose_lines_name_the_isa():
    out = ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) Advanced "
           "Vector Extensions 2 (Intel(R) AVX2) enabled processors, Lnx 2.60GHz lp64 gnu_thread\n"
           "onednn_verbose,v1,info,cpu,isa:Intel AVX2\n")
    assert isa.verbose_isa(out) == ["MKL: Intel(R) Advanced Vector Extensions 2 (Intel(R) AVX2)", "oneDNN: Intel AVX2"]
    assert isa.verbose_isa("nothing") == []


def test_header_and_caption_say_what_is_emulated_and_what_is_not_held():
    checks = [{"framework": "nngraph", "status": "capped", "detail": "no AVX-512"},
              {"framework": "jax", "status": "partial", "detail": "YNNPACK"},
              {"framework": "onnxruntime", "status": "not capped", "detail": "MLAS"}]
    lines = isa.header("Some Xeon", checks)
    assert "An emulation on Some Xeon" in lines[0] and "not an AMD Zen" in lines[0]
    assert lines[2].split()[:2] == ["nngraph", "capped"] and lines[4].split()[:3] == ["onnxruntime", "not", "capped"]
    assert isa.not_held(checks).endswith("jax (partial), onnxruntime (not capped)")
    assert isa.header("x", []) == [] and isa.not_held([]) == "" and isa.probe_all("native", ["nngraph"]) == []


@pytest.mark.parametrize("fw", ["nngraph", "numpy"])
def test_a_real_probe_finds_the_framework_held(fw, tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    r = isa.probe(fw, "avx2")
    assert r["status"] == "capped", r
    if fw == "nngraph":
        assert "no AVX-512, 256-bit vectors" in r["detail"], r


def test_the_probe_runs_as_a_script_and_prints_one_json_line(tmp_path):
    env = dict(isa.framework_env("onnxruntime", "avx2"), NNGRAPH_CACHE_DIR=str(tmp_path))
    p = subprocess.run([sys.executable, os.path.join(BENCH, "isa.py"), "--probe", "onnxruntime"],
                       capture_output=True, text=True, env=env, timeout=300)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["framework"] == "onnxruntime" and out["status"] in ("not capped", "not installed"), out
