"""`--isa avx2` of benchmarks/run.py, lstm.py and onnx_resnet50.py: every framework
held to AVX2+FMA code paths on an AVX-512 host, each in its own process, and a check
in a probe process of its own that each hold took effect.

This is an emulation, not an AVX2 machine: the caches, clock, memory and core of
this CPU (an AVX-512 Intel) stay as they are; only the instructions the libraries
choose change. An AMD Zen differs in all of those. The report says so.

What holds each framework (the names as the installed versions read them):
    nngraph      NNGRAPH_CPU_FEATURES=-avx512f: its generated code, its thresholds and
                 its BLAS (MKL held to AVX2, OpenBLAS an AVX2 core type; codegen/llvm/blas.py),
                 and the per-host measured choices keyed by the features; NNGRAPH_BLAS=auto
                 keeps the BLAS choice timed although OPENBLAS_CORETYPE is set for NumPy
    MKL          MKL_ENABLE_INSTRUCTIONS=AVX2 (PyTorch's own MKL; nngraph's when set)
    OpenBLAS     OPENBLAS_CORETYPE=Haswell (Zen on AMD): NumPy's and scipy's
    NumPy        NPY_DISABLE_CPU_FEATURES: its dispatch targets that need AVX-512
    PyTorch      ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, and for
                 torch.compile's C++ TORCHINDUCTOR_CPP_MARCH=haswell (else -march=native)
    JAX          XLA_FLAGS=--xla_cpu_max_isa=AVX2 (XLA's generated code) and
                 --xla_cpu_experimental_ynn_fusion_type= (no YNNPACK fusions). The YNNPACK
                 kernels XLA hands dots and reductions to by default pick their ISA from
                 cpuid (ynn::get_supported_arch_flags, cpuinfo); no flag or variable caps
                 them, so they are turned off: dots then run on XLA's runtime, Eigen's
                 GEMM as jaxlib was built (AVX without FMA; the probe disassembles it),
                 reductions on XLA's own code. Held, but not what JAX runs on an AVX2
                 machine (YNNPACK's AVX2 kernels): a lower bound for it, said in the
                 report. (oneDNN dots, --xla_cpu_experimental_onednn_fusion_type=dot with
                 ONEDNN_MAX_CPU_ISA=AVX2, are held too but ran the MLP step slower.)
    PyTensor     its C code built with -march=haswell (PYTENSOR_FLAGS gcc__cxxflags;
                 without a -march it adds the host's own flags, -mavx512f among them), in
                 a compile directory of its own; its products run on NumPy's OpenBLAS
    onnxruntime  nothing: MLAS picks its kernels from cpuid and onnxruntime has no
                 setting that caps them, so it is marked "not capped"

    python benchmarks/isa.py --probe nngraph --isa avx2   # one framework's check, as JSON
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))      # the repository: nngraph's rules (codegen/) are asked, not copied
ISAS = ("native", "avx2")
FRAMEWORKS = ("nngraph", "numpy", "torch", "jax", "pytensor", "onnxruntime")
EMULATION_NOTE = ("ISA avx2: every framework held to AVX2+FMA code paths on this CPU. An emulation on "
                  "{cpu}: the same caches, clock and memory; not an AMD Zen or any AVX2 machine.")
AVX2_GCC_ARCH = "haswell"    # the x86-64-v3 level: AVX2, FMA, BMI2, no AVX-512
# XLA's code generation capped, YNNPACK's fusions (ISA from cpuid, uncapped) off
JAX_AVX2_FLAGS = ("--xla_cpu_max_isa=AVX2", "--xla_cpu_experimental_ynn_fusion_type=")


def numpy_avx512_targets() -> list:
    """NumPy's dispatch targets that need AVX-512 (what NPY_DISABLE_CPU_FEATURES turns off)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__
    return [t for t in __cpu_dispatch__ if t.startswith("AVX512") or t == "X86_V4"]


def common_env(base: dict) -> dict:
    """What every process gets under --isa avx2: the BLAS libraries and NumPy held to AVX2."""
    from codegen.llvm.blas import avx2_core_type
    env = dict(base, MKL_ENABLE_INSTRUCTIONS="AVX2", OPENBLAS_CORETYPE=avx2_core_type())
    targets = numpy_avx512_targets()
    if targets:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(targets)
    return env


def _joined(sep: str, *parts) -> str:
    """The non-empty `parts` joined by `sep` (a user's own setting kept, ours after it)."""
    return sep.join(p for p in parts if p)


def private_tmp_dir(name: str) -> str:
    """<tmp>/<name>-<uid>, created 0700: a compile directory whose .so files a process
    loads, so one another user could write (a planted one in the shared /tmp) is refused."""
    from codegen.cache import trusted_dir
    path = os.path.join(tempfile.gettempdir(), f"{name}-{os.getuid()}")
    if trusted_dir(path) is None:
        raise RuntimeError(f"{path} is not private to this user (see the warning above); "
                           "remove it or set TMPDIR to a directory of your own")
    return path


def framework_env(framework: str, isa: str, base=None) -> dict:
    """The environment of `framework`'s process under `isa` ("native": `base` as it is).
    framework: one of FRAMEWORKS, or "floor" (NumPy, as benchmarks/floors.py measures)."""
    base = dict(os.environ if base is None else base)
    if isa not in ISAS:
        raise ValueError(f"--isa must be one of {', '.join(ISAS)}, got {isa!r}")
    if isa == "native":
        return base
    env = common_env(base)
    if framework == "nngraph":
        env["NNGRAPH_CPU_FEATURES"] = _joined(",", base.get("NNGRAPH_CPU_FEATURES", ""), "-avx512f")
        env.setdefault("NNGRAPH_BLAS", "auto")
    elif framework.startswith("torch"):
        env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", TORCHINDUCTOR_CPP_MARCH=AVX2_GCC_ARCH,
                   TORCHINDUCTOR_CACHE_DIR=private_tmp_dir("torchinductor-isa-avx2"))
    elif framework == "jax":
        env["XLA_FLAGS"] = _joined(" ", base.get("XLA_FLAGS", ""), *JAX_AVX2_FLAGS)
    elif framework == "pytensor":
        flags = [f"gcc__cxxflags=-march={AVX2_GCC_ARCH}",
                 f"base_compiledir={private_tmp_dir('pytensor-isa-avx2')}"]
        env["PYTENSOR_FLAGS"] = _joined(",", base.get("PYTENSOR_FLAGS", ""), *flags)
    elif framework not in FRAMEWORKS + ("floor",):
        raise ValueError(f"no ISA settings for framework {framework!r}")
    return env


# ----------------------------------------------------------------------------- checks


# what only AVX-512 encodes: zmm registers, ymm16-31, mask registers, embedded
# broadcasts, and instructions AVX2 lacks (LLVM and XLA prefer 256-bit vectors on
# many Intel CPUs, so code can use AVX-512 without a single zmm)
AVX512_ASM = re.compile(r"zmm|%k[1-7]\b|ymm(1[6-9]|2[0-9]|3[01])|\{1to\d+\}|vpternlog|vrcp14|vrsqrt14|vscalef|vpermt2")


def avx512_in(asm: str) -> str:
    """The first AVX-512-only token in assembly text, or ""."""
    m = AVX512_ASM.search(asm)
    return m.group(0) if m else ""


def _objdump_avx512(paths) -> str:
    """"no AVX-512 in N object file(s)" / "<token> in <file>", or "" without a disassembler."""
    tool = shutil.which("objdump") or shutil.which("llvm-objdump")
    if not tool or not paths:
        return ""
    for p in paths:
        token = avx512_in(subprocess.run([tool, "-d", p], capture_output=True, text=True).stdout)
        if token:
            return f"{token} in {os.path.basename(p)}"
    return f"no AVX-512 in {len(paths)} object file(s)"


def check_nngraph() -> tuple:
    import numpy as np

    import nngraph as ng
    from codegen.host import host_facts
    from codegen.llvm import blas, target
    x = ng.placeholder(("N", 256), name="x")
    w = ng.parameter(np.ones((256, 64), np.float32), name="w")
    fn = ng.compile([x], ng.tanh(x @ w + 1.0).sum(), target="cpu")
    fn(np.ones((64, 256), np.float32))
    token = avx512_in(fn.dump("asm"))
    code = f"generated code: {token or 'no AVX-512'}, {host_facts().vector_bits}-bit vectors"
    path = blas.mkl_instance().code_path() if blas.chosen_blas() == "mkl" else blas.openblas_core()
    status = nngraph_status(token, target.has_feature("avx512f"), path)
    return status, f"{code}; BLAS {blas.describe()}, code path {path or '?'}"


def nngraph_status(token: str, avx512f: bool, blas_path: str):
    """True (capped), False, or "not verified" when the BLAS's code path cannot be read
    ("" or MKL's unknown "branch N"): missing evidence is not a hold."""
    from codegen.llvm.blas import AVX512_TYPES
    if token or avx512f or "AVX512" in blas_path.upper() or blas_path.lower() in AVX512_TYPES:
        return False
    return "not verified" if not blas_path or blas_path.startswith("branch ") else True


def _numpy_openblas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "?"
    return ",".join(sorted({str(i.get("architecture")) for i in threadpool_info() if i.get("internal_api") == "openblas"}))


def _wide_openblas(cores: str) -> bool:
    """Whether an OpenBLAS core type among `cores` (comma-separated) uses AVX-512."""
    from codegen.llvm.blas import AVX512_TYPES
    return any(c.strip().lower() in AVX512_TYPES for c in cores.split(","))


def check_numpy() -> tuple:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    on = [t for t in __cpu_dispatch__ if __cpu_features__.get(t) and (t.startswith("AVX512") or t == "X86_V4")]
    core = _numpy_openblas()
    ok = not on and not _wide_openblas(core)
    return ok, f"AVX-512 dispatch targets on: {on or 'none'}; OpenBLAS core {core}"


def check_torch() -> tuple:
    import torch
    from torch._inductor import config as inductor_config
    from torch._inductor.cpu_vec_isa import pick_vec_isa
    a = torch.randn(64, 64)
    _ = a @ a                                                       # MKL_VERBOSE names its ISA
    torch.nn.Conv2d(16, 32, 3)(torch.randn(8, 16, 32, 32))          # ONEDNN_VERBOSE names its ISA
    cap, isa = torch.backends.cpu.get_cpu_capability(), str(pick_vec_isa())
    ok = cap == "AVX2" and isa == "avx2" and inductor_config.cpp.march in (None, AVX2_GCC_ARCH)
    return ok, f"ATen {cap}; inductor vec ISA {isa}, -march={inductor_config.cpp.march or 'native'}"


def check_jax() -> tuple:
    dump = tempfile.mkdtemp(prefix="jax-isa-dump-")
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={dump}"
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_platforms", "cpu")
    f = jax.jit(lambda a, b: (jnp.tanh(a @ b) * jax.nn.sigmoid(a @ b)).sum(axis=0))
    jax.block_until_ready(f(jnp.ones((128, 256)), jnp.ones((256, 64))))
    g = jax.jit(lambda x: jnp.exp(x) * 2 + jnp.log1p(x))     # natively this one has AVX-512 code
    jax.block_until_ready(g(jnp.ones(100000)))
    seen = _objdump_avx512(sorted(glob.glob(os.path.join(dump, "*.o"))))
    hlo = " ".join(open(p).read() for p in glob.glob(os.path.join(dump, "*after_optimizations.txt")))
    ynn = "__ynn_fusion" in hlo or "__xnn_fusion" in hlo
    shutil.rmtree(dump, ignore_errors=True)
    flag = re.search(r"--xla_cpu_max_isa=(\S+)", os.environ["XLA_FLAGS"])
    detail = f"XLA codegen --xla_cpu_max_isa={flag.group(1) if flag else 'unset'}: {seen or 'not disassembled'}"
    if ynn:
        detail += "; YNNPACK/XNNPACK fusions (dots, reductions) pick their ISA from cpuid: not capped"
        return jax_status(bool(flag), seen, ynn), detail
    dots = _eigen_gemm_isa()
    detail += f"; YNNPACK off: dots on jaxlib's Eigen GEMM ({dots or 'not disassembled'}), a lower bound for JAX on AVX2"
    return jax_status(bool(flag), seen, ynn, dots), detail


# Eigen's float GEMM micro-kernel, gebp_kernel<float, float, long, ...>, as mangled
EIGEN_FLOAT_GEBP = "_ZNK5Eigen8internal11gebp_kernelIffl"


def _eigen_gemm_isa() -> str:
    """"no AVX-512, FMA" / "no AVX-512, AVX without FMA" / "<token> in Eigen's GEMM", or ""
    where jaxlib's Eigen float GEMM kernel cannot be found or disassembled."""
    import jaxlib
    lib = os.path.join(os.path.dirname(jaxlib.__file__), "libjax_common.so")
    tool, readelf = shutil.which("objdump"), shutil.which("readelf")
    if not (tool and readelf and os.path.exists(lib)):
        return ""
    syms = subprocess.run([readelf, "-Ws", lib], capture_output=True, text=True).stdout
    asm = ""
    for line in syms.splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[7].startswith(EIGEN_FLOAT_GEBP) and parts[3] == "FUNC":
            start, size = int(parts[1], 16), int(parts[2])
            asm += subprocess.run([tool, "-d", f"--start-address={start}", f"--stop-address={start + size}", lib],
                                  capture_output=True, text=True).stdout
    if "vmulps" not in asm and "vfmadd" not in asm:
        return ""
    token = avx512_in(asm)
    if token:
        return f"{token} in Eigen's GEMM"
    return "no AVX-512, " + ("FMA" if "vfmadd" in asm else "AVX without FMA")


def jax_status(flag_set: bool, seen: str, ynn: bool, dots: str = "no AVX-512"):
    """True (capped), "partial" (YNNPACK fusions pick their ISA from cpuid), False, or
    "not verified" when nothing was disassembled (no objdump) in XLA's code or, without
    YNNPACK, in the Eigen GEMM the dots run on: missing evidence is not a hold."""
    if not flag_set or (seen and not seen.startswith("no AVX-512")) or (dots and not dots.startswith("no AVX-512")):
        return False
    if not seen:
        return "not verified"
    if ynn:
        return "partial"
    return True if dots else "not verified"


def check_pytensor() -> tuple:
    from pytensor.link.c.cmodule import GCC_compiler
    args = GCC_compiler.compile_args()
    wide = [a for a in args if a.startswith("-mavx512")]
    march = [a for a in args if a.startswith("-march")]
    core = _numpy_openblas()
    ok = not wide and f"-march={AVX2_GCC_ARCH}" in march and not _wide_openblas(core)
    return ok, f"g++ {' '.join(march) or 'no -march'}, AVX-512 flags: {wide or 'none'}; NumPy's OpenBLAS core {core}"


def check_onnxruntime() -> tuple:
    import onnxruntime
    return False, (f"onnxruntime {onnxruntime.__version__}: MLAS picks its kernels from cpuid; no session option "
                   "or variable caps them (runs AVX-512 kernels on this CPU)")


CHECKS = {"nngraph": check_nngraph, "numpy": check_numpy, "torch": check_torch, "jax": check_jax,
          "pytensor": check_pytensor, "onnxruntime": check_onnxruntime}
VERBOSE = {"torch": {"MKL_VERBOSE": "1", "ONEDNN_VERBOSE": "1"}}


def verbose_isa(text: str) -> list:
    """The ISA that MKL_VERBOSE and ONEDNN_VERBOSE print when they start, from a probe's output."""
    out = []
    m = re.search(r"MKL_VERBOSE oneMKL.*?architecture (.*?)(?: enabled processors|, Lnx)", text)
    if m:
        out.append(f"MKL: {m.group(1)}")
    m = re.search(r"onednn_verbose,.*?,info,cpu,isa:([^\n]*)", text)
    if m:
        out.append(f"oneDNN: {m.group(1).strip()}")
    return out


def probe(framework: str, isa: str, base=None) -> dict:
    """{"framework", "status": "capped" | "partial" | "not capped" | "not verified", "detail"}
    from a process of its own with `framework`'s environment under `isa` (from `base`,
    default this process's: give it the benchmark's cache directory to see its BLAS choice)."""
    env = dict(framework_env(framework, isa, base), **VERBOSE.get(framework, {}))
    env["PYTHONPATH"] = _joined(os.pathsep, os.path.dirname(HERE), env.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", framework, "--isa", isa],
                       capture_output=True, text=True, env=env, timeout=600)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith('{"framework"')]
    if p.returncode or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"framework": framework, "status": "not verified", "detail": f"probe failed: {tail[0][:160]}"}
    out = json.loads(lines[-1])
    verbose = verbose_isa(p.stdout + p.stderr)
    if verbose:
        out["detail"] += "; " + ", ".join(verbose)
        if any("AVX-512" in v or "AVX512" in v for v in verbose) and out["status"] == "capped":
            out["status"] = "not capped"
    return out


def _run_check(framework: str) -> dict:
    try:
        ok, detail = CHECKS[framework]()
    except ImportError as e:
        return {"framework": framework, "status": "not installed", "detail": str(e)[:120]}
    status = ok if isinstance(ok, str) else ("capped" if ok else "not capped")
    return {"framework": framework, "status": status, "detail": detail}


def probe_all(isa: str, frameworks, base=None) -> list:
    """probe() of each framework under `isa`; [] for native (nothing is held)."""
    return [] if isa == "native" else [probe(fw, isa, base) for fw in frameworks]


def header(cpu: str, checks: list) -> list:
    """The lines a benchmark prints first under --isa avx2: what is emulated, then each
    framework's check (status and what was seen); [] for native."""
    if not checks:
        return []
    lines = [EMULATION_NOTE.format(cpu=cpu), "ISA checks (each in a probe process with the benchmark's environment):"]
    return lines + [f"  {r['framework']:<12} {r['status']:<13} {r['detail']}" for r in checks]


def print_header(cpu: str, checks: list) -> None:
    """Print header(cpu, checks) and, under --isa avx2, the not_held caption (lstm.py,
    onnx_resnet50.py; run.py puts them in its report)."""
    for line in header(cpu, checks):
        print(line)
    if checks:
        print(not_held(checks))


def not_held(checks: list) -> str:
    """For a table's caption: the frameworks whose hold to AVX2 is not verified whole."""
    weak = [f"{r['framework']} ({r['status']})" for r in checks if r["status"] not in ("capped", "not installed")]
    return f"ISA avx2, emulated; not held to AVX2 (or not verified): {', '.join(weak) or 'none'}" if checks else ""


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe", choices=FRAMEWORKS, required=True)
    ap.add_argument("--isa", choices=ISAS, default="avx2")
    a = ap.parse_args()
    print(json.dumps(_run_check(a.probe)))
