"""Suite-wide fixtures.

- ``target``: every test that takes it runs once per entry of ``TARGETS``:
  "oracle" runs the graph as built on the node-by-node NumPy interpreter
  (tests/helpers.py; it checks the op definitions themselves), "reference" is
  ng.compile's NumPy target (lowered Program, so it checks the passes too), "cpu" the
  LLVM backend, "gpu" the Triton backend (on Triton's interpreter without a CUDA
  device). Extend it from a plugin (``conftest.TARGETS.append(...)`` before
  collection) or with the environment (``NNGRAPH_TEST_TARGETS=name,...``). A target
  whose backend cannot be imported here is skipped with the reason.
- Per-host choices are kept as first measured (``NNGRAPH_RETIME=0``, below).
- Every graph compiled in the suite is checked to print and parse back to the same
  text (``ng.format(ng.parse(s)) == s``, with and without locations): ``ng.compile``
  is wrapped for each test. Opt out with ``@pytest.mark.no_roundtrip`` or
  ``NNGRAPH_NO_ROUNDTRIP=1``.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # so tests can `import helpers`

# target "gpu" without a CUDA device runs its Triton kernels on Triton's interpreter,
# which must be chosen before triton is imported (no GPU driver device node: no GPU)
if not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")):
    os.environ.setdefault("TRITON_INTERPRET", "1")

# a per-host choice (conv layout, BLAS, thread costs) timed while the suite loads the
# machine would be provisional and timed again by each later process, so that which
# processes hit the compile cache would depend on the load: the suite keeps every
# measurement (NNGRAPH_RETIME=0, inherited by the processes it starts); the re-timing
# itself is tested with fake evidence (tests/codegen/test_timing_trust.py)
os.environ.setdefault("NNGRAPH_RETIME", "0")

import nngraph as ng  # noqa: E402

import helpers  # noqa: E402

TARGETS = ["oracle", "reference", "cpu", "gpu"]
for _t in os.environ.get("NNGRAPH_TEST_TARGETS", "").split(","):
    if _t.strip() and _t.strip() not in TARGETS:
        TARGETS.append(_t.strip())

# Under Triton's interpreter every kernel launch costs milliseconds of Python, so the
# finite-difference gradient checks through conv2d/pooling (hundreds of calls of a
# 20-kernel program each) would take minutes on target "gpu": they are skipped there
# unless NNGRAPH_SLOW_GPU_TESTS=1 (on a real GPU they always run). The forward ops, the
# other gradients and a CNN training step (tests/runtime/test_gpu_runtime.py) still run.
SLOW_ON_INTERPRETED_GPU = ("test_conv2d_gradient", "test_second_derivatives_through_conv2d",
                           "test_conv_gradient_primitives_have_correct_vjps", "test_pooling_gradients",
                           "test_second_derivatives_through_pooling")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0") or os.environ.get("NNGRAPH_SLOW_GPU_TESTS"):
        return
    skip = pytest.mark.skip(reason="slow under Triton's interpreter (NNGRAPH_SLOW_GPU_TESTS=1 runs it)")
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs and cs.params.get("target") == "gpu" and item.originalname.startswith(SLOW_ON_INTERPRETED_GPU):
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "no_roundtrip: do not check that compiled graphs print and parse back")


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", list(TARGETS), indirect=True)


@pytest.fixture
def target(request):
    """The target name a test compiles for; skipped where that backend is unavailable."""
    name = getattr(request, "param", "reference")
    if name == "oracle":
        return name
    from runtime.targets import available
    ok, why = available(name)
    if not ok:
        pytest.skip(why)
    return name


@pytest.fixture(autouse=True)
def _roundtrip_every_compiled_graph(request, monkeypatch):
    if request.node.get_closest_marker("no_roundtrip") or os.environ.get("NNGRAPH_NO_ROUNDTRIP"):
        yield
        return
    real = ng.compile

    def compile_and_check(*args, **kwargs):
        fn = real(*args, **kwargs)
        helpers.assert_roundtrip(fn.graph)
        fn.roundtrip_checked = True
        return fn

    monkeypatch.setattr(ng, "compile", compile_and_check)
    yield
