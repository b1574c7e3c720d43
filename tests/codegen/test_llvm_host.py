"""codegen/host.py's record of LLVM's answers about the host (what lets a
compile-cache hit skip loading LLVM): read when this host's fingerprint is in the
table, asked of LLVM otherwise; a damaged table or a record LLVM disagrees with is
replaced."""
import json

import pytest

from codegen import host


@pytest.fixture
def table_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    host.llvm_host.cache_clear()
    yield tmp_path
    host.llvm_host.cache_clear()


def test_recorded_then_read(table_dir):
    live = host.ask_llvm()
    assert host.llvm_host() == live
    table = json.loads((table_dir / host.LLVM_TABLE).read_text())
    assert table == {host.llvm_fingerprint(): live}
    host.llvm_host.cache_clear()
    (table_dir / host.LLVM_TABLE).write_text(json.dumps({host.llvm_fingerprint(): dict(live, cpu="recorded")}))
    assert host.llvm_host()["cpu"] == "recorded"          # read, not asked


@pytest.mark.parametrize("damage", ["{not json", '{"%s": {"cpu": 3}}', "[1, 2]"])
def test_a_damaged_table_is_asked_again(table_dir, damage):
    (table_dir / host.LLVM_TABLE).write_text(damage.replace("%s", host.llvm_fingerprint()))
    assert host.llvm_host() == host.ask_llvm()


def test_a_record_llvm_disagrees_with_is_replaced(table_dir):
    live = host.ask_llvm()
    (table_dir / host.LLVM_TABLE).write_text(json.dumps({host.llvm_fingerprint(): dict(live, features="+sse2")}))
    assert host.llvm_host()["features"] == "+sse2"
    assert host.check_against_llvm() is False
    assert host.llvm_host() == live
    assert json.loads((table_dir / host.LLVM_TABLE).read_text())[host.llvm_fingerprint()] == live
    assert host.check_against_llvm() is True


def test_the_fingerprint_follows_the_cpu(monkeypatch):
    info = host.cpuinfo()
    before = host.llvm_fingerprint()
    monkeypatch.setattr(host, "cpuinfo", lambda: dict(info, flags=info.get("flags", "") + " newflag"))
    assert host.llvm_fingerprint() != before


def test_without_a_cpu_identity_llvm_is_asked_and_nothing_recorded(table_dir, monkeypatch):
    monkeypatch.setattr(host, "cpuinfo", lambda: {})
    assert host.llvm_host() == host.ask_llvm()
    assert not (table_dir / host.LLVM_TABLE).exists()
