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


def require_cuda() -> None:
    """Module-level skip for tests of what only a CUDA device has (CUDA graphs): they run
    on a GPU machine (`python -m pytest tests -k gpu`, see README), not under the
    interpreter."""
    require_gpu_target()
    import torch
    from runtime.gpu import device_or_error
    if device_or_error() != "cuda" or not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (launch replay captures CUDA graphs); TRITON_INTERPRET runs "
                    "without one", allow_module_level=True)
