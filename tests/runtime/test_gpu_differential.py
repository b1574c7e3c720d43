"""The seeded random graphs of test_cpu_differential.py through target="reference" and
target="gpu" (Triton; its interpreter without a GPU): values, gradients and updates
must agree, for several batch sizes without recompiling."""
import importlib.util
import os

import numpy as np
import pytest

pytest.importorskip("triton")
pytest.importorskip("torch")

import nngraph as ng  # noqa: E402
from runtime import gpu  # noqa: E402

try:
    gpu.device_or_error()
except RuntimeError as e:  # pragma: no cover
    pytest.skip(str(e), allow_module_level=True)

_spec = importlib.util.spec_from_file_location(
    "_cpu_differential", os.path.join(os.path.dirname(__file__), "test_cpu_differential.py"))
_cpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cpu)


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_agree_on_gpu(seed):
    dtype = "float64" if seed % 3 == 0 else "float32"
    results = {}
    for target in ("reference", "gpu"):
        inputs, outputs, updates, w = _cpu.random_graph(seed, dtype)
        fn = ng.compile(inputs, outputs, updates=updates, target=target)
        rng = np.random.default_rng(100 + seed)
        got = []
        for n in (5, 1, 33):
            X = rng.standard_normal((n, 8)).astype(dtype)
            Y = rng.standard_normal((8, 5)).astype(dtype)
            got.append(fn(X, Y))
        results[target] = (got, w.value.copy())
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-9, atol=1e-11)
    for ref, dev in zip(results["reference"][0], results["gpu"][0]):
        for r, d in zip(ref, dev):
            np.testing.assert_allclose(d, r, **tol)
    np.testing.assert_allclose(results["gpu"][1], results["reference"][1], **tol)
