"""Helpers of the BLAS tests: which candidates are installed (`installed_blas`), and
what they run in a fresh process (the BLAS is chosen and loaded once per process):
`COMPILED_PRODUCT` compiles x @ w on target="cpu" and checks it against NumPy,
leaving `fn` for the lines after it; `NO_MKL_WHEEL` makes the process one without the
mkl wheel; `run` runs a script."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMPILED_PRODUCT = textwrap.dedent("""
    import numpy as np
    import nngraph as ng
    x = ng.placeholder((64, 48), name="x")
    w = ng.placeholder((48, 32), name="w")
    fn = ng.compile([x, w], x @ w, target="cpu")
    a = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((48, 32)).astype(np.float32)
    np.testing.assert_allclose(fn(a, b), a @ b, rtol=1e-5, atol=1e-5)
""")

# first lines of a script: the process behaves as one where the mkl wheel is not installed
NO_MKL_WHEEL = textwrap.dedent("""
    import importlib.metadata
    real = importlib.metadata.distribution
    def distribution(name):                 # this process has no mkl wheel
        if name == "mkl":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)
    importlib.metadata.distribution = distribution
    from codegen.llvm import dist_version
    real_folder = dist_version.metadata_folder
    dist_version.metadata_folder = lambda name: None if name == "mkl" else real_folder(name)
""")


def run(*parts: str, env: dict) -> str:
    """stdout of `python -c` the dedented `parts` joined, from the repository root;
    fails the test with its stderr when it exits non-zero."""
    script = "\n".join(textwrap.dedent(p) for p in parts)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def installed_blas() -> list:
    """The BLAS candidates installed here (codegen/llvm/blas.py): scipy's OpenBLAS
    always, MKL with the `mkl` wheel (CI installs it: .ci/setup test)."""
    from codegen.llvm import mkl
    return ["openblas"] + (["mkl"] if mkl.installed() else [])
