"""The real-browser tests need headless Chromium (Debian's `chromium` package).
Where it is missing, the `chromium` fixture installs it with apt-get (as
.ci/setup test does); the tests are skipped only where that cannot be done."""
import os
import shutil
import subprocess

import pytest

NAMES = ("chromium", "chromium-browser")


def _find():
    return next((p for p in map(shutil.which, NAMES) if p), None)


@pytest.fixture(scope="session")
def chromium():
    path = _find()
    if path is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], env=env,
                           capture_output=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
        path = _find()
    if path is None:
        pytest.skip("headless Chromium is not installed and could not be installed with apt-get "
                    "(run as root, or apt-get install chromium)")
    return path
