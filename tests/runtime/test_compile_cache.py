"""The compile cache of whole functions (runtime/compile_cache.py): a second compile of
the same graph loads the stored Program and object code and runs no passes, no
lowering and no code generation; it computes exactly what the first compile's function
computes; a change to the graph, the options, the settings, the environment or the
source is a miss; a damaged or foreign entry is never used."""
import inspect
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nngraph as ng
from codegen import cache
from runtime import compile_cache

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    return tmp_path


def _mlp_step(opt_level=2, check_numerics=False, seed=0):
    """The same graph (same nodes, same lines) each call, with its own parameters."""
    rng = np.random.default_rng(seed)
    x = ng.placeholder(("N", 12), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W1 = ng.parameter((rng.standard_normal((12, 16)) * 0.3).astype(np.float32), name="W1")
    b1 = ng.parameter(np.full(16, 0.1, np.float32), name="b1")
    W2 = ng.parameter((rng.standard_normal((16, 5)) * 0.3).astype(np.float32), name="W2")
    loss = ng.cross_entropy(ng.relu(x @ W1 + b1) @ W2, y)
    ps = [W1, b1, W2]
    gs = ng.grad(loss, ps)
    return ng.compile([x, y], loss, updates={p: p - 0.1 * g for p, g in zip(ps, gs)}, target="cpu",
                      opt_level=opt_level, check_numerics=check_numerics)


def _data(n=7):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 12)).astype(np.float32), rng.integers(0, 5, n).astype(np.int32)


def _steps(fn, calls=3):
    X, Y = _data()
    losses = [float(fn(X, Y)) for _ in range(calls)]
    return losses, [p.value.copy() for p in fn.params]


def test_second_compile_is_a_hit_that_computes_the_same(private_cache):
    first = _mlp_step()
    second = _mlp_step()
    assert first.stats()["cache"] != "compiled function"
    assert second.stats()["cache"] == "compiled function" and second.stats()["cache_hit"]
    (want_losses, want_params), (losses, params) = _steps(first), _steps(second)
    assert losses == want_losses                  # the same machine code: bit for bit
    for a, b in zip(params, want_params):
        np.testing.assert_array_equal(a, b)
    assert len(list(private_cache.glob("*.nga"))) == 1


def test_a_hit_runs_no_passes_lowering_or_code_generation(monkeypatch):
    _mlp_step()

    def forbidden(*args, **kwargs):
        raise AssertionError("a cache hit ran a compile stage")
    import codegen.llvm.entry
    import passes.lowering
    import passes.pipeline
    from codegen.llvm import target
    monkeypatch.setattr(passes.pipeline, "optimize", forbidden)
    monkeypatch.setattr(passes.lowering, "to_program", forbidden)
    monkeypatch.setattr(codegen.llvm.entry, "build_module", forbidden)
    monkeypatch.setattr(target, "optimize", forbidden)
    monkeypatch.setattr(target, "emit_object", forbidden)
    fn = _mlp_step()
    assert set(fn.stats()["compile_time"]) == {"trace", "startup", "cache_lookup", "load"}
    losses, _ = _steps(fn, calls=1)
    assert np.isfinite(losses[0])


def test_miss_breaks_compile_time_down_by_stage():
    t = _mlp_step().stats()["compile_time"]
    assert list(t) == ["trace", "startup", "cache_lookup", "passes", "lowering", "memory_plan", "llvm_ir",
                       "object_cache", "llvm_optimize", "machine_code", "load"]
    assert all(v >= 0 for v in t.values())


def test_what_a_hit_rebuilds_on_demand_matches_the_first_compile():
    first, second = _mlp_step(), _mlp_step()
    assert second.stats()["cache"] == "compiled function"
    for stage in ("graph", "opt", "kernels"):
        assert second.dump(stage) == first.dump(stage)
    assert second.runner.compiled.ir_text == first.runner.compiled.ir_text    # rebuilt on demand
    assert "nngraph_entry" in second.dump("llvm")
    assert second.stats()["passes"] == first.stats()["passes"]
    fused = [(r["node"], r["op"], r["reason"], r["where"]) for r in first.stats()["fusion"]]
    assert [(r["node"], r["op"], r["reason"], r["where"]) for r in second.stats()["fusion"]] == fused
    X, Y = _data()
    table = second.profile(X, Y, calls=2)
    assert len(table.rows) == first.stats()["kernels"]


def test_numerics_error_on_a_hit_names_the_op():
    def build():
        x = ng.placeholder(("N",), name="x")
        return ng.compile([x], ng.log(x) * 2.0, target="cpu", check_numerics=True)
    build()
    fn = build()
    assert fn.stats()["cache"] == "compiled function"
    with pytest.raises(ng.NumericsError, match="log"):
        fn(np.array([1.0, -1.0], np.float32))


@pytest.mark.parametrize("change", ["opt_level", "check_numerics", "line", "setting", "environment", "source"])
def test_a_change_anywhere_is_a_miss(change, monkeypatch):
    _mlp_step()
    kwargs = {}
    if change == "opt_level":
        kwargs["opt_level"] = 1
    elif change == "check_numerics":
        kwargs["check_numerics"] = True
    elif change == "setting":
        from codegen.llvm import entry
        monkeypatch.setattr(entry, "THREAD_WORK", entry.THREAD_WORK + 1)
    elif change == "environment":
        monkeypatch.setenv("NNGRAPH_SOMETHING", "1")
    elif change == "source":
        monkeypatch.setattr(compile_cache, "source_digest", lambda: "edited")
    fn = _mlp_step_elsewhere() if change == "line" else _mlp_step(**kwargs)
    assert fn.stats()["cache"] != "compiled function"
    assert _mlp_step(**kwargs).stats()["cache"] == "compiled function"   # stored under its own key


def test_a_changed_constant_is_a_miss():
    def scaled(c):
        x = ng.placeholder(("N",), name="x")
        return ng.compile([x], ng.relu(x) * c, target="cpu")
    scaled(3.0)
    assert scaled(3.0).stats()["cache"] == "compiled function"
    f = scaled(4.0)
    assert f.stats()["cache"] != "compiled function"
    np.testing.assert_array_equal(f(np.array([-1, 2], np.float32)), np.array([0, 8], np.float32))


def _mlp_step_elsewhere():
    """_mlp_step's own source run as another file: the same graph, built on other lines
    (whose messages would cite those lines)."""
    scope = {"ng": ng, "np": np}
    exec(compile("\n" * 10 + inspect.getsource(_mlp_step), "elsewhere.py", "exec"), scope)
    return scope["_mlp_step"]()


def _entry_file(d):
    (entry,) = d.glob("*.nga")
    return entry


def test_damaged_entry_is_compiled_again_and_rewritten(private_cache):
    want, _ = _steps(_mlp_step(), calls=1)
    entry = _entry_file(private_cache)
    good = entry.read_bytes()
    for damaged in (good[:len(good) // 2], good[:-1] + bytes([good[-1] ^ 0xFF]), b"garbage", b""):
        entry.write_bytes(damaged)
        fn = _mlp_step()
        assert fn.stats()["cache"] != "compiled function"
        assert _steps(fn, calls=1)[0] == want
        assert _mlp_step().stats()["cache"] == "compiled function"     # rewritten, valid


def _raw_payload(data: dict, blobs: list, offsets: list) -> bytes:
    """A payload laid out by hand (offsets as given, not as pack would place them)."""
    text = json.dumps(dict(data, blobs=offsets)).encode()
    out = compile_cache.FORMAT + struct.pack("<Q", len(text)) + text
    return out + b"".join(bytes(b) for b in blobs)


@pytest.mark.parametrize("forge", ["foreign class", "not a data class", "blob outside", "other format"])
def test_entry_with_a_valid_checksum_but_bad_content_is_not_used(forge, private_cache):
    want, _ = _steps(_mlp_step(), calls=1)
    key = _entry_file(private_cache).name[:-len(compile_cache.SUFFIX)]
    data, blobs = compile_cache.unpack(cache.load(key, compile_cache.SUFFIX))
    if forge == "foreign class":
        data["program"]["schedule"][0]["dc"] = "os:system"
    elif forge == "not a data class":
        data["program"]["schedule"][0]["dc"] = "passes.program:format_program"
    if forge == "blob outside":
        end = len(compile_cache.FORMAT) + 8 + 10 ** 5
        forged = _raw_payload(data, blobs, [[end + 10 ** 6, len(b)] for b in blobs])
    else:
        forged = compile_cache.pack(data, blobs)
    if forge == "other format":
        forged = b"NNGRAPH-FN0\n" + forged[len(compile_cache.FORMAT):]
    assert cache.store(key, forged, compile_cache.SUFFIX)   # a valid checksum
    assert compile_cache.load(key) is None
    fn = _mlp_step()
    assert fn.stats()["cache"] != "compiled function"
    assert _steps(fn, calls=1)[0] == want


def test_only_cpu_compiles_without_dump_dir_are_cached(tmp_path):
    x = ng.placeholder(("N",), name="x")
    g = ng.compile([x], ng.exp(x), target="reference").graph
    assert compile_cache.cacheable("cpu", g, None)
    assert not compile_cache.cacheable("gpu", g, None)
    assert not compile_cache.cacheable("reference", g, None)
    assert not compile_cache.cacheable("cpu", g, str(tmp_path))


def test_settings_text_is_the_same_in_every_process():
    src = "from runtime import compile_cache as c; c.load_pipeline(); print(c.settings_text())"
    outs = [subprocess.run([sys.executable, "-c", src], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=ROOT)) for seed in (1, 2)]
    assert all(o.returncode == 0 for o in outs), outs[0].stderr
    assert outs[0].stdout == outs[1].stdout and "N_THREADS" in outs[0].stdout


SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_compile_cache import _data, _mlp_step
    fn = _mlp_step()
    X, Y = _data()
    print(json.dumps({{"cache": fn.stats()["cache"], "loss": float(fn(X, Y))}}))
""")


def test_a_new_process_hits_the_entry_of_an_earlier_one(private_cache):
    def run():
        env = dict(os.environ, NNGRAPH_CACHE_DIR=str(private_cache), PYTHONPATH=ROOT)
        out = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=HERE)], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])
    first, second = run(), run()
    assert first["cache"] != "compiled function" and second["cache"] == "compiled function"
    assert first["loss"] == second["loss"]


def test_the_second_compile_of_a_fresh_process_is_a_hit(private_cache):
    """The key's settings must be the same at a process's first compile as at its next
    ones: a module the first compile imports late (runtime/conv_choice.py was) would add
    its constants to the second key and turn every second compile into a miss."""
    src = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {HERE!r})
        from test_compile_cache import _mlp_step
        _mlp_step()
        print(_mlp_step().stats()["cache"])
    """)
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(private_cache), PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", src], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "compiled function"


def _lstm_step():
    """A step of a new ng.nn.LSTM layer (named lstm_1, lstm_2... as built) and a dense
    head: the same graph at every call but for its parameters' names."""
    xs = ng.placeholder(("N", "T", 6), name="xs")
    y = ng.placeholder(("N",), "int32", name="y")
    h = ng.nn.LSTM(5)(xs)
    V = ng.parameter(np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3), name="V")
    loss = ng.cross_entropy(h @ V, y)
    return [xs, y], loss


def _conv_step():
    """A step of a new ng.nn.Conv2D layer (its weights feed the products through views)."""
    x = ng.placeholder(("N", 2, 6, 6), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    h = ng.nn.Conv2D(3, 3, activation="relu")(x)
    loss = ng.cross_entropy(ng.reshape(h, (h.shape[0], 48)) @ ng.constant(np.ones((48, 4), np.float32)), y)
    return [x, y], loss


_SWAP = [("a", "b")]


def _swapped_step():
    """Two parameters whose names trade places from one call to the next."""
    first, second = _SWAP[0]
    _SWAP[0] = (second, first)
    x = ng.placeholder(("N", 4), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    A = ng.parameter(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), name=first)
    B = ng.parameter(np.linspace(1, -2, 9, dtype=np.float32).reshape(3, 3), name=second)
    return [x, y], ng.cross_entropy(ng.tanh(x @ A) @ B, y)


def _training(build):
    """A callable that compiles the SGD step of the graph `build` made, with the
    parameters' values at that point."""
    inputs, loss = build()
    ps = [p for p in ng.compile(inputs, loss, target="reference").graph.params()]
    gs = ng.grad(loss, ps)
    updates = {p: p - 0.1 * g for p, g in zip(ps, gs)}
    return lambda: ng.compile(inputs, loss, updates=updates, target="cpu")


def _run_once(fn, feeds):
    """Loss and updated parameters of one call, the parameters restored afterwards."""
    before = [p.value.copy() for p in fn.params]
    loss = fn(*feeds)
    after = [p.value.copy() for p in fn.params]
    for p, v in zip(fn.params, before):
        p.value = v
    return loss, after


@pytest.mark.parametrize("build", [_lstm_step, _conv_step, _swapped_step])
def test_the_same_graph_under_other_parameter_names_is_a_hit(build, tmp_path, monkeypatch):
    """A layer built again gets a new name (lstm_1, lstm_2): that second model's step is
    a hit, and its Function is the one a cold compile of it makes, names included."""
    _training(build)()
    compile_again = _training(build)
    hit = compile_again()
    assert hit.stats()["cache"] == "compiled function" and hit.stats()["cache_hit"]
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path / "other"))
    cold = compile_again()
    assert cold.stats()["cache"] != "compiled function"
    assert hit.dump("kernels") == cold.dump("kernels")
    assert list(hit.stats()["fusion"]) == list(cold.stats()["fusion"])
    assert hit.runner.compiled.ir_text == cold.runner.compiled.ir_text
    rng = np.random.default_rng(3)
    shape = [s if isinstance(s, int) else {"N": 4, "T": 7}[str(s)] for s in cold.graph.inputs[0].shape]
    feeds = (rng.standard_normal(shape).astype(np.float32), rng.integers(0, 3, 4).astype(np.int32))
    (hit_loss, hit_params), (cold_loss, cold_params) = _run_once(hit, feeds), _run_once(cold, feeds)
    assert hit_loss == cold_loss
    for a, b in zip(hit_params, cold_params):
        np.testing.assert_array_equal(a, b)


def _new_process(private_cache, before="", after=""):
    """Run `before`, compile _mlp_step, run `after` in a new process; its JSON line:
    the cache outcome, the loss of one call and what `after` adds to `out`."""
    src = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {HERE!r})
        out = {{}}
    """) + textwrap.dedent(before) + textwrap.dedent("""
        from test_compile_cache import _data, _mlp_step
        fn = _mlp_step()
        out["cache"] = fn.stats()["cache"]
    """) + textwrap.dedent(after) + textwrap.dedent("""
        out["loss"] = float(fn(*_data()))
        print(json.dumps(out))
    """)
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(private_cache), PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", src], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_new_process_hit_imports_no_pass_and_no_ir_builder(private_cache):
    """What a hit needs is the BLAS, the Program's classes and the object code mapped
    (codegen/llvm/elf_loader.py): not the passes, the lowering, the IR builders, the
    report, nor LLVM itself, nor what only a measurement of a per-host choice needs."""
    cold = _new_process(private_cache)
    heavy = ["passes.pipeline", "passes.lowering", "codegen.llvm.entry", "nngraph.report.function_report", "scipy",
             "networkx", "llvmlite.binding", "runtime.conv_choice", "statistics"]
    hit = _new_process(private_cache, after=f"out['imported'] = [m for m in {heavy!r} if m in sys.modules]")
    assert cold["cache"] != "compiled function" and hit["cache"] == "compiled function"
    assert hit["imported"] == []
    assert hit["loss"] == cold["loss"]


def test_a_setting_changed_before_a_process_compiles_is_not_taken_for_its_default(private_cache):
    """A process that changes a threshold before its first compile gets its own entry,
    and does not record the changed value as the module's default: a process with the
    default value does not load the changed one's code, one with the change does."""
    change = "import codegen.llvm.entry as e; e.THREAD_WORK = 1\n"
    changed = _new_process(private_cache, before=change)
    default = _new_process(private_cache)
    assert changed["cache"] != "compiled function" and default["cache"] != "compiled function"
    assert _new_process(private_cache)["cache"] == "compiled function"
    _new_process(private_cache, before=change)     # its key lists what the defaults recorded now do not
    assert _new_process(private_cache, before=change)["cache"] == "compiled function"
    loaded_default = "import codegen.llvm.entry\n"      # loaded before the compile, value untouched
    assert _new_process(private_cache, before=loaded_default)["cache"] == "compiled function"


def test_compiling_pauses_the_garbage_collector_and_restores_it():
    import gc
    from nngraph.compiler import collector_paused
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError):
        with collector_paused():
            raise ValueError("a failed compile")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()          # a caller's choice stays
    finally:
        gc.enable()


def test_the_stages_of_a_miss_and_a_hit_add_up_within_the_compile_time():
    """compile_time's stages are disjoint parts of the ng.compile call: their sum is
    at most compile_seconds, which is at most the call's own duration."""
    import time
    for expected in ("none", "compiled function"):
        t0 = time.perf_counter()
        fn = _mlp_step()
        outer = time.perf_counter() - t0
        st = fn.stats()
        assert st["cache"] == expected
        assert all(v >= 0 for v in st["compile_time"].values())
        assert sum(st["compile_time"].values()) <= st["compile_seconds"] <= outer
