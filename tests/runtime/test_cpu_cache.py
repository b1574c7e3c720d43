"""The disk cache of object code: a second compile in a new process is a hit; a
corrupt or truncated entry is recompiled and the result is still right."""
import os
import subprocess
import sys
import textwrap

import numpy as np

from codegen import cache

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SCRIPT = textwrap.dedent("""
    import sys, json
    import numpy as np
    sys.path.insert(0, {codegen_tests!r})
    from progbuild import Dim, ProgBuilder, pointwise
    N = Dim("N")
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N,), "input")
    y = pb.buf("y", "float32", (N,), "output")
    b = pb.body()
    i = b.idx(0)
    pointwise(pb, y, (N,), b, b("exp", b("neg", b.load(x, i))))
    runner, _ = pb.build()
    a = np.linspace(-3, 3, 101).astype(np.float32)
    (out,), _ = runner.run([a], [], {{"N": 101}})
    err = float(np.max(np.abs(out - np.exp(-a.astype(np.float64))) / np.exp(-a)))
    print(json.dumps({{"hit": runner.stats["cache_hit"], "err": err, "secs": runner.stats["codegen_seconds"]}}))
""")


def _compile_in_new_process(cache_dir):
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(cache_dir))
    src = SCRIPT.format(codegen_tests=os.path.join(ROOT, "tests", "codegen"))
    out = subprocess.run([sys.executable, "-c", src], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import json
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_compile_in_a_new_process_is_a_cache_hit(tmp_path):
    first = _compile_in_new_process(tmp_path)
    second = _compile_in_new_process(tmp_path)
    assert not first["hit"] and second["hit"]
    assert first["err"] < 1e-6 and second["err"] < 1e-6
    assert len(list(tmp_path.glob("*.o"))) == 1


def test_corrupt_or_truncated_entry_is_recompiled(tmp_path):
    _compile_in_new_process(tmp_path)
    (entry,) = tmp_path.glob("*.o")
    good = entry.read_bytes()
    for damaged in (good[:len(good) // 2], good[:-1] + bytes([good[-1] ^ 0xFF]), b"garbage", b""):
        entry.write_bytes(damaged)
        r = _compile_in_new_process(tmp_path)
        assert not r["hit"] and r["err"] < 1e-6
        assert entry.read_bytes() == good      # rewritten with a valid entry


def test_entries_are_checked_before_use(tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    k = cache.key("ir", "target")
    assert cache.load(k) is None
    assert cache.store(k, b"\x7fELF-object")
    assert cache.load(k) == b"\x7fELF-object"
    p = cache.path_for(k)
    data = bytearray(p.read_bytes())
    data[-3] ^= 1
    p.write_bytes(bytes(data))
    assert cache.load(k) is None
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_key_depends_on_ir_and_target():
    assert cache.key("a", "t1") != cache.key("b", "t1") != cache.key("a", "t2")
    assert cache.key("a", "t1") == cache.key("a", "t1")
    assert np.all([len(cache.key("a", "t")) == 64])
