"""Module-level skip for tests of target="gpu": they need Triton, PyTorch and a
CUDA device or TRITON_INTERPRET=1 (which tests/conftest.py sets without a GPU)."""
import pytest


def require_gpu_target() -> None:
    pytest.importorskip("triton")
    pytest.importorskip("torch")
    from runtime.gpu import device_or_error
    try:
        device_or_error()
    except RuntimeError as e:  # pragma: no cover - no GPU and no TRITON_INTERPRET
        pytest.skip(str(e), allow_module_level=True)
