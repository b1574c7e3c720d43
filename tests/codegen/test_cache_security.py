"""The compile cache runs only what this user wrote: the directory is created 0700;
a directory or entry owned by someone else or writable by group/others is refused
(warned once, compiled without the cache); a Triton module is executed from its
source, never through a planted __pycache__ (issue 11 item 11)."""
import os
import py_compile
import stat
import uuid

import numpy as np
import pytest

import nngraph as ng
from codegen import cache
from codegen.triton import loader


@pytest.fixture
def cache_at(tmp_path, monkeypatch):
    d = tmp_path / "nncache"
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(d))
    monkeypatch.setattr(cache, "_warned", set(), raising=False)
    return d


def _compile_exp():
    # a graph of its own (a fresh constant) so no earlier test's entry exists
    c = float(uuid.uuid4().int % 1000) / 7.0
    f = _compile_same(c)
    a = np.linspace(-1, 1, 9, dtype=np.float32)
    np.testing.assert_allclose(f(a), np.exp(a) + np.float32(c), rtol=1e-6)
    return f, c


def _compile_same(c):
    x = ng.placeholder(("N",), name="x")
    return ng.compile([x], ng.exp(x) + c, target="cpu")


def test_cache_directory_is_created_private(cache_at):
    _compile_exp()
    assert stat.S_IMODE(os.stat(cache_at).st_mode) == 0o700
    assert list(cache_at.glob("*.o"))


def test_entry_writable_by_others_is_not_loaded(cache_at):
    f, c = _compile_exp()
    entries = sorted(cache_at.glob("*.o")) + sorted(cache_at.glob("*.nga"))
    assert len(entries) == 2                   # the object code, the whole compiled function
    assert _compile_same(c).stats()["cache"] == "compiled function"
    for entry in entries:
        os.chmod(entry, 0o666)                 # anyone could have planted them
    with pytest.warns(RuntimeWarning, match="writable by group or others"):
        g = _compile_same(c)
    assert not g.stats()["cache_hit"] and g.stats()["cache"] == "none"


def test_compiled_function_entry_writable_by_others_is_not_loaded(cache_at):
    f, c = _compile_exp()
    (entry,) = cache_at.glob("*.nga")
    os.chmod(entry, 0o666)
    with pytest.warns(RuntimeWarning, match="writable by group or others"):
        g = _compile_same(c)
    # compiled again from the graph (its object code, which only this user can write, reused)
    assert g.stats()["cache"] == "object code"
    a = np.linspace(-1, 1, 9, dtype=np.float32)
    np.testing.assert_allclose(g(a), np.exp(a) + np.float32(c), rtol=1e-6)


def test_cache_owned_by_someone_else_is_not_used(cache_at, monkeypatch):
    f, c = _compile_exp()
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)   # now the files are someone else's
    with pytest.warns(RuntimeWarning, match=f"owned by uid {me}, not by you"):
        g = _compile_same(c)
    assert not g.stats()["cache_hit"]


def test_directory_writable_by_others_is_not_used(cache_at):
    cache_at.mkdir(mode=0o700)
    os.chmod(cache_at, 0o777)
    with pytest.warns(RuntimeWarning, match="writable by group or others"):
        f, _ = _compile_exp()
    assert not list(cache_at.glob("*.o")) and not f.stats()["cache_hit"]


def test_planted_pycache_beside_a_triton_module_is_not_run(cache_at):
    token = uuid.uuid4().hex
    source = f"TOKEN = {token!r}\n"
    path = os.path.join(loader.cache_dir(), f"{loader.module_name(source)}.py")
    # someone plants bytecode the import system would trust without looking at the source
    with open(path, "w") as f:
        f.write("import builtins\nbuiltins.NNGRAPH_PLANTED = True\nTOKEN = 'planted'\n")
    py_compile.compile(path, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH, doraise=True)
    with open(path, "w") as f:
        f.write(source)
    mod = loader.load(source)
    import builtins
    assert not getattr(builtins, "NNGRAPH_PLANTED", False)
    assert mod.TOKEN == token
