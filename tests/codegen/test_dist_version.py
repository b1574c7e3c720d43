"""codegen/llvm/dist_version.py reads a distribution's version and file list from its
metadata folder: the same answers importlib.metadata gives, and importlib.metadata's
own where the folder is not there plainly."""
import importlib.metadata as md
import os
import sys

import pytest

from codegen.llvm import dist_version


@pytest.mark.parametrize("dist", ["numpy", "scipy", "llvmlite", "mkl"])
def test_version_and_files_are_importlib_metadata_s(dist):
    try:
        want = md.distribution(dist)
    except md.PackageNotFoundError:
        assert dist_version.installed_version(dist) == ""
        return
    assert dist_version.installed_version(dist) == want.version
    files = sorted(os.path.normpath(str(want.locate_file(f))) for f in want.files)
    assert sorted(dist_version.installed_files(dist)) == files


def _fake_site(tmp_path, *versions):
    for v in versions:
        d = tmp_path / f"fakedist-{v}.dist-info"
        d.mkdir()
        (d / "RECORD").write_text(f"fakedist/__init__.py,sha256=x,1\nfakedist-{v}.dist-info/RECORD,,\n")
    return str(tmp_path)


def test_a_distribution_is_read_from_its_metadata_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [_fake_site(tmp_path, "1.2.3")] + sys.path)
    assert dist_version.installed_version("fakedist") == "1.2.3"
    assert dist_version.installed_files("fakedist") == [str(tmp_path / "fakedist" / "__init__.py"),
                                                        str(tmp_path / "fakedist-1.2.3.dist-info" / "RECORD")]
    assert dist_version.installed_version("nosuchdist") == ""


def test_two_versions_in_one_place_are_left_to_importlib_metadata(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [_fake_site(tmp_path, "1.0", "2.0")] + sys.path)
    assert dist_version.metadata_folder("fakedist") is None
    assert dist_version.installed_files("fakedist") is None
    asked = []
    monkeypatch.setattr(md, "version", lambda name: asked.append(name) or "from importlib.metadata")
    assert dist_version.installed_version("fakedist") == "from importlib.metadata"
    assert asked == ["fakedist"]
