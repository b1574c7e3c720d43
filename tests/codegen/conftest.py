import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # so tests can `import progbuild`


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test session compiles into its own cache directory."""
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nncache"))
