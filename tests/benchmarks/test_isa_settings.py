"""benchmarks/isa.py's `--isa avx2` plumbing (no timing): the environment each
framework's process gets, that the three benchmarks hand it to each process, the
checks' parsing, and two real checks in probe processes (nngraph, NumPy)."""
import json
import os
import shutil
import subprocess
import sys
import types

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks")
sys.path.insert(0, BENCH)

import isa  # noqa: E402
from codegen.llvm.blas import avx2_core_type  # noqa: E402

BASE = {"PATH": "/usr/bin", "XLA_FLAGS": "--xla_cpu_use_thunk_runtime=true", "PYTENSOR_FLAGS": "floatX=float32"}
CAPS = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": avx2_core_type()}


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
    assert isa.framework_env("jax", "avx2", BASE)["XLA_FLAGS"] == ("--xla_cpu_use_thunk_runtime=true --xla_cpu_max_isa=AVX2 "
                                                                "--xla_cpu_experimental_ynn_fusion_type=")   # YNNPACK off
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


def test_lstm_gives_each_variant_its_frameworks_environment(monkeypatch, tmp_path):
    import lstm
    seen = []
    monkeypatch.setattr(lstm.subprocess, "run", _fake_run(seen, lambda a: '{"variant": "x"}'))
    a = types.SimpleNamespace(T=2, N=2, F=4, H=4, steps=1, warmup=0, isa="avx2", choices=str(tmp_path))
    for which in ("layer", "scan", "torch", "jax"):
        lstm._in_process_of_its_own(a, which)
    envs = {args[args.index("--only") + 1]: env for args, env in seen}
    assert envs["layer"]["NNGRAPH_CPU_FEATURES"] == envs["scan"]["NNGRAPH_CPU_FEATURES"] == "-avx512f"
    assert envs["torch"]["ATEN_CPU_CAPABILITY"] == "avx2" and "NNGRAPH_CPU_FEATURES" not in envs["torch"]
    assert envs["jax"]["XLA_FLAGS"].endswith(" ".join(isa.JAX_AVX2_FLAGS))


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


@pytest.mark.parametrize("fw", ["nngraph", "numpy", "jax"])
def test_a_real_probe_finds_the_framework_held(fw, tmp_path, monkeypatch):
    if fw == "jax":
        pytest.importorskip("jax")
        if not (shutil.which("objdump") and shutil.which("readelf")):
            pytest.skip("no objdump/readelf: JAX's hold cannot be read (the probe says 'not verified')")
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    r = isa.probe(fw, "avx2")
    assert r["status"] == "capped", r
    if fw == "nngraph":
        assert "no AVX-512, 256-bit vectors" in r["detail"], r
    if fw == "jax":       # no YNNPACK fusion left to pick AVX-512 kernels from cpuid
        assert "YNNPACK off" in r["detail"] and "not capped" not in r["detail"], r


def test_the_probe_runs_as_a_script_and_prints_one_json_line(tmp_path):
    env = dict(isa.framework_env("onnxruntime", "avx2"), NNGRAPH_CACHE_DIR=str(tmp_path))
    p = subprocess.run([sys.executable, os.path.join(BENCH, "isa.py"), "--probe", "onnxruntime"],
                       capture_output=True, text=True, env=env, timeout=300)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["framework"] == "onnxruntime" and out["status"] in ("not capped", "not installed"), out


def test_missing_evidence_is_not_verified_never_capped():
    assert isa.nngraph_status("", False, "") == "not verified"            # OpenBLAS core type unreadable
    assert isa.nngraph_status("", False, "branch 99") == "not verified"   # an MKL code path it does not know
    assert isa.nngraph_status("", False, "Haswell") is True and isa.nngraph_status("", False, "AVX2") is True
    assert isa.nngraph_status("", False, "SkylakeX") is False and isa.nngraph_status("zmm", False, "Haswell") is False
    assert isa.nngraph_status("", False, "AVX512_E1") is False and isa.nngraph_status("", True, "AVX2") is False
    assert isa.jax_status(True, "", False) == "not verified"              # no objdump: nothing disassembled
    assert isa.jax_status(True, "", True) == "not verified"
    assert isa.jax_status(True, "no AVX-512 in 2 object file(s)", False) is True
    assert isa.jax_status(True, "no AVX-512 in 2 object file(s)", True) == "partial"
    assert isa.jax_status(True, "zmm in a.o", True) is False and isa.jax_status(False, "no AVX-512 in 1", False) is False
    # without YNNPACK the dots run on jaxlib's Eigen GEMM, disassembled too
    assert isa.jax_status(True, "no AVX-512 in 2 object file(s)", False, "no AVX-512, AVX without FMA") is True
    assert isa.jax_status(True, "no AVX-512 in 2 object file(s)", False, "") == "not verified"
    assert isa.jax_status(True, "no AVX-512 in 2 object file(s)", False, "zmm in Eigen's GEMM") is False


def test_compile_directories_of_loaded_code_are_private(tmp_path, monkeypatch):
    monkeypatch.setattr(isa.tempfile, "gettempdir", lambda: str(tmp_path))
    torch_dir = isa.framework_env("torch", "avx2", BASE)["TORCHINDUCTOR_CACHE_DIR"]
    pytensor_flags = isa.framework_env("pytensor", "avx2", BASE)["PYTENSOR_FLAGS"]
    for d in (torch_dir, pytensor_flags.split("base_compiledir=")[1]):
        assert d.startswith(str(tmp_path)) and d.endswith(f"-{os.getuid()}")
        assert os.stat(d).st_mode & 0o777 == 0o700
    os.chmod(torch_dir, 0o777)                      # as if another user could plant a module there
    with pytest.raises(RuntimeError, match="torchinductor-isa-avx2.* is not private to this user"):
        isa.framework_env("torch", "avx2", BASE)


def _probe_output(args):
    return json.dumps({"framework": args[args.index("--probe") + 1], "status": "capped", "detail": ""})


def test_lstm_probes_see_the_choices_every_variant_runs(monkeypatch, tmp_path):
    import lstm
    choices = tmp_path / "choices"
    choices.mkdir()
    seen = []
    monkeypatch.setattr(lstm.subprocess, "run", _fake_run(seen, _probe_output))
    a = types.SimpleNamespace(T=2, N=2, F=4, H=4, steps=1, warmup=0, isa="avx2", choices=str(choices))
    lstm._checks(a, ["nngraph", "torch"], str(choices))
    assert [env["NNGRAPH_CACHE_DIR"] for _, env in seen] == [str(choices)] * 2
    (choices / "blas-choice.json").write_text('{"the probe": "chose"}')      # as the nngraph probe leaves it
    (choices / "host-1234.json").write_text("{}")
    caches = []
    monkeypatch.setattr(lstm.subprocess, "run", lambda args, env=None, **kw: caches.append(env["NNGRAPH_CACHE_DIR"])
                        or types.SimpleNamespace(returncode=0, stdout='{"variant": "x"}', stderr=""))
    for which in ("layer", "scan"):
        lstm._in_process_of_its_own(a, which)
    assert len(set(caches)) == 2 and str(choices) not in caches            # each compile still cold
    for d in caches:
        assert sorted(os.listdir(d)) == ["blas-choice.json", "host-1234.json"]
        assert open(os.path.join(d, "blas-choice.json")).read() == '{"the probe": "chose"}'


def test_resnet_probes_get_the_engines_threads(monkeypatch):
    import onnx_resnet50
    seen = []
    monkeypatch.setattr(onnx_resnet50, "probe_all", lambda isa, fws, base=None: seen.append(base) or [])
    monkeypatch.setattr(onnx_resnet50, "make_model", lambda path: None)
    monkeypatch.setattr(onnx_resnet50.subprocess, "run", lambda *a, **k: types.SimpleNamespace(stdout=json.dumps(
        {"engine": "x", "median_ms": 1, "min_ms": 1, "setup_s": 0, "argmax": 0, "checksum": 0})))
    monkeypatch.setattr(sys, "argv", ["onnx_resnet50.py", "--threads", "1", "--isa", "avx2", "--runs", "1"])
    onnx_resnet50.main()
    assert seen[0]["NNGRAPH_NUM_THREADS"] == seen[0]["NNGRAPH_BLAS_THREADS"] == "1"


def test_print_header_prints_the_header_and_the_caption(capsys):
    checks = [{"framework": "jax", "status": "partial", "detail": "YNNPACK"}]
    isa.print_header("Some Xeon", checks)
    assert capsys.readouterr().out.splitlines() == isa.header("Some Xeon", checks) + [isa.not_held(checks)]
    isa.print_header("Some Xeon", [])
    assert capsys.readouterr().out == ""
