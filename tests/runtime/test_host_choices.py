"""Per-host choices that a busy moment cannot spoil (codegen/timing_trust.py): a conv
layout, the BLAS or a host cost measured while the machine was disturbed is stored as
provisional and measured again by a later process, a bounded number of times; a clean
one is final; NNGRAPH_RETIME=1 and ng.forget_host_choices() drop them
(runtime/host_choices.py). Evidence is faked: no test depends on the machine's load."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from fake_probe import FakeProbe

import nngraph as ng
from codegen import host, timing_trust
from codegen.llvm import blas, blas_choice
from runtime import compile_cache, conv_choice, conv_table, host_choices

GEO = dict(N="N", G=1, O=4, Og=4, Cg=2, KH=3, KW=3, K=18, sh=1, sw=1, pt=1, pl=1, dh=1, dw=1, H=6, W=6, OH=6, OW=6)
DISTURBED = timing_trust.Evidence(rounds=5, preemptions=40, others_running=3, cpus=2)
CLEAN = timing_trust.Evidence(rounds=5, preemptions=0, others_running=0, cpus=2, spread=1.05)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRAPH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NNGRAPH_RETIME", raising=False)      # the suite keeps measurements (conftest)
    monkeypatch.delenv("NNGRAPH_CONV_LAYOUT", raising=False)
    monkeypatch.setattr(conv_table, "answers", {})
    monkeypatch.setattr(conv_table, "found_due", set())
    quiet(monkeypatch)
    return tmp_path


def quiet(monkeypatch, others=0):
    """The machine as timing_trust.due sees it now: `others` threads of others running on 2 CPUs."""
    monkeypatch.setattr(timing_trust, "system_probe", lambda: FakeProbe(running=(others,), cpus=2))


@pytest.fixture
def timings(cache_dir, monkeypatch):
    """time_layouts replaced by one that answers from `script` ((choice, evidence) per
    measurement, the last repeated) and counts its calls."""
    state = {"script": [("example", DISTURBED)], "calls": 0}

    def fake(geo, dtype, products):
        choice, evidence = state["script"][min(state["calls"], len(state["script"]) - 1)]
        state["calls"] += 1
        return {"choice": choice, "batch_s": 2.0, "example_s": 1.0, "examples": 32, "evidence": evidence}
    monkeypatch.setattr(conv_choice, "time_layouts", fake)
    return state


def new_process(monkeypatch):
    """What a new process starts with: no conv choice in memory."""
    monkeypatch.setattr(conv_table, "answers", {})
    monkeypatch.setattr(conv_table, "found_due", set())


def stored_conv_entry(path):
    (entries,) = json.loads((path / conv_table.CACHE_FILE).read_text()).values()
    (entry,) = entries.values()
    return entry


def test_a_disturbed_layout_is_provisional_and_timed_again_by_the_next_process(cache_dir, timings, monkeypatch):
    timings["script"] = [("example", DISTURBED), ("batch", CLEAN)]
    assert conv_choice.measured_layout(GEO, "float32") == "example"
    trust = stored_conv_entry(cache_dir)["trust"]
    assert timing_trust.provisional(trust) and trust["disturbed"][0].startswith("preempted")
    assert conv_choice.measured_layout(GEO, "float32") == "example" and timings["calls"] == 1   # once a process
    new_process(monkeypatch)
    assert conv_choice.measured_layout(GEO, "float32") == "batch" and timings["calls"] == 2     # timed again
    entry = stored_conv_entry(cache_dir)
    assert entry["trust"]["retimes"] == 1 and not timing_trust.provisional(entry["trust"])
    new_process(monkeypatch)
    assert conv_choice.measured_layout(GEO, "float32") == "batch" and timings["calls"] == 2     # final


def test_a_provisional_layout_waits_for_a_quiet_moment(cache_dir, timings, monkeypatch):
    """While the machine is busy, a new process uses the provisional layout untimed (and
    a compiled function made with it), so a busy machine neither pays for re-timing
    nor uses up the re-timings; the first process to find it quiet times it again."""
    timings["script"] = [("example", DISTURBED), ("batch", CLEAN)]
    choices = conv_choice.MeasuredChoices()
    assert choices(GEO, "float32") == "example"
    quiet(monkeypatch, others=2)
    for _ in range(3):
        new_process(monkeypatch)
        assert conv_table.settled(choices.provisional)
        assert conv_choice.measured_layout(GEO, "float32") == "example"
    assert timings["calls"] == 1 and stored_conv_entry(cache_dir)["trust"]["retimes"] == 0
    quiet(monkeypatch)
    new_process(monkeypatch)
    assert not conv_table.settled(choices.provisional)
    assert conv_choice.measured_layout(GEO, "float32") == "batch" and timings["calls"] == 2


def test_a_clean_layout_is_final(cache_dir, timings, monkeypatch):
    timings["script"] = [("example", CLEAN)]
    for _ in range(3):
        new_process(monkeypatch)
        assert conv_choice.measured_layout(GEO, "float32") == "example"
    assert timings["calls"] == 1 and stored_conv_entry(cache_dir)["trust"]["disturbed"] == []


def test_an_always_busy_machine_retimes_a_bounded_number_of_times(cache_dir, timings, monkeypatch):
    timings["script"] = [("example", DISTURBED), ("batch", DISTURBED)]
    for _ in range(timing_trust.RETIMES + 4):
        new_process(monkeypatch)
        conv_choice.measured_layout(GEO, "float32")
    assert timings["calls"] == 1 + timing_trust.RETIMES
    entry = stored_conv_entry(cache_dir)
    assert entry["choice"] == "batch" and entry["trust"]["retimes"] == timing_trust.RETIMES   # the last, kept


def test_retime_0_keeps_a_disturbed_measurement(cache_dir, timings, monkeypatch):
    monkeypatch.setenv("NNGRAPH_RETIME", "0")
    for _ in range(3):
        new_process(monkeypatch)
        assert conv_choice.measured_layout(GEO, "float32") == "example"
    assert timings["calls"] == 1 and stored_conv_entry(cache_dir)["trust"]["disturbed"]   # still recorded


def test_an_old_table_is_final_and_a_damaged_record_is_timed_again(cache_dir, timings, monkeypatch):
    key, shape = conv_choice.host_key(), conv_choice._shape_key(GEO, "float32", conv_choice.ALL)
    path = cache_dir / conv_table.CACHE_FILE
    path.write_text(json.dumps({key: {shape: {"choice": "taps", "batch_s": 1.0}}}))     # before trust records
    os.chmod(path, 0o600)
    assert conv_choice.measured_layout(GEO, "float32") == "taps" and timings["calls"] == 0
    path.write_text(json.dumps({key: {shape: {"choice": "taps", "trust": {"disturbed": "?"}}}}))
    new_process(monkeypatch)
    assert conv_choice.measured_layout(GEO, "float32") == "example" and timings["calls"] == 1
    assert timing_trust.record(DISTURBED) == stored_conv_entry(cache_dir)["trust"]   # a first measurement


def test_a_compile_collects_its_provisional_answers(cache_dir, timings, monkeypatch):
    choices = conv_choice.MeasuredChoices()
    assert choices(GEO, "float32") == "example"
    (dep,) = choices.provisional
    assert dep[2] == "example" and conv_table.settled([dep])
    new_process(monkeypatch)
    assert not conv_table.settled([dep])             # another process must time it again
    timings["script"] = [("example", CLEAN)]
    clean = conv_choice.MeasuredChoices()
    assert clean(GEO, "float32") == "example" and clean.provisional == []
    new_process(monkeypatch)
    assert conv_table.settled([dep])                 # final in the table, same choice
    assert not conv_table.settled([[dep[0], dep[1], "batch"]]) and not conv_table.settled([["x"]])


def _conv_step():
    """The same small CNN step (same nodes, same lines) each call."""
    rng = np.random.default_rng(0)
    x = ng.placeholder(("N", 2, 6, 6), name="x")
    w = ng.parameter((rng.standard_normal((4, 2, 3, 3)) * 0.3).astype(np.float32), name="w")
    loss = ng.mean(ng.conv2d(x, w, padding=1) ** 2)
    (gw,) = ng.grad(loss, [w])
    return ng.compile([x], loss, updates={w: w - 0.1 * gw}, target="cpu")


def test_a_compiled_function_made_with_a_provisional_choice_is_compiled_again_by_a_new_process(
        cache_dir, timings, monkeypatch):
    """Same process: a hit. A new process: a miss whose lowering times the layer again;
    once the choice is final, the entry it stored is a hit for every process."""
    timings["script"] = [("example", DISTURBED), ("example", CLEAN)]
    x = np.random.default_rng(1).standard_normal((3, 2, 6, 6)).astype(np.float32)
    first = _conv_step()
    want = first(x)
    assert first.stats()["cache"] != "compiled function" and timings["calls"] == 1
    assert _conv_step().stats()["cache"] == "compiled function"
    new_process(monkeypatch)
    again = _conv_step()
    assert again.stats()["cache"] != "compiled function" and timings["calls"] == 2
    np.testing.assert_allclose(again(x), want, rtol=1e-6)
    new_process(monkeypatch)
    assert _conv_step().stats()["cache"] == "compiled function" and timings["calls"] == 2


def test_the_compile_key_ignores_retime(monkeypatch):
    monkeypatch.setenv("NNGRAPH_RETIME", "1")
    with_it = compile_cache.environment_text()
    monkeypatch.delenv("NNGRAPH_RETIME")
    assert with_it == compile_cache.environment_text()


# ----------------------------------------------------------------------------- the BLAS, host costs

def _two_candidates():
    return {"a": blas.openblas_addresses, "b": blas.openblas_addresses}


def test_a_disturbed_blas_choice_is_timed_again_until_final(cache_dir, monkeypatch):
    for k in ("NNGRAPH_BLAS", "NNGRAPH_BLAS_CORETYPE", "OPENBLAS_CORETYPE"):
        monkeypatch.delenv(k, raising=False)
    script = [("a", DISTURBED), ("b", CLEAN)]
    calls = []

    def fake(usable, threads, **kw):
        choice, evidence = script[min(len(calls), len(script) - 1)]
        calls.append(choice)
        return {"choice": choice, "seconds": {}, "evidence": evidence}
    monkeypatch.setattr(blas_choice, "time_candidates", fake)
    name, entry = blas_choice.choose(_two_candidates(), ("a", "b"), ["t"], 2)
    assert name == "a" and timing_trust.provisional(entry["trust"])
    assert blas_choice.choose(_two_candidates(), ("a", "b"), ["t"], 2)[0] == "b"      # next process: again
    for _ in range(2):
        name, entry = blas_choice.choose(_two_candidates(), ("a", "b"), ["t"], 2)
    assert name == "b" and calls == ["a", "b"] and entry["trust"]["retimes"] == 1


def test_the_blas_timing_gathers_evidence_and_chooses_as_before(cache_dir, monkeypatch):
    """The choice is still the smaller total; the evidence comes from the probe."""
    monkeypatch.setattr(timing_trust, "system_probe", lambda: FakeProbe(switches=0, running=(0,)))
    shapes = ((8, 16, 8, False, False),)
    entry = blas_choice.time_candidates({"a": blas.openblas_addresses(), "b": blas.openblas_addresses()}, 1,
                                        shapes=shapes, rounds=3)
    assert entry["choice"] == min(entry["seconds"], key=entry["seconds"].get)
    ev = entry["evidence"]
    assert ev.preemptions == 0 and ev.others_running == 0 and ev.rounds == 3


def test_a_host_cost_measured_while_disturbed_is_measured_again(cache_dir, monkeypatch):
    static = dict(host.static_facts(), cpu_model="test CPU")
    # the first measurement busy; then the moment is quiet (due) and so is the second
    probes = iter([FakeProbe(running=(5,)), FakeProbe(running=(0,)), FakeProbe(running=(0,))])
    monkeypatch.setattr(timing_trust, "system_probe", lambda: next(probes))
    values = iter([61000.0, 9000.0, 1.0])
    assert host.measured_fact("thread_start_ns", lambda: next(values), static) == 61000.0
    trust = host._load_trust(host._facts_path(static), static)["thread_start_ns"]
    assert timing_trust.provisional(trust) and trust["disturbed"][0].startswith("busy")
    assert host.measured_fact("thread_start_ns", lambda: next(values), static) == 9000.0   # next process
    assert host.measured_fact("thread_start_ns", lambda: next(values), static) == 9000.0   # final
    path = host._facts_path(static)
    data = json.loads(path.read_text())
    data["trust"]["thread_start_ns"] = {"disturbed": 3}                                    # damaged record
    path.write_text(json.dumps(data))
    assert host._load_measured(path, static) == {}


# ----------------------------------------------------------------------------- forgetting

def test_forgetting_drops_the_choices_and_the_functions_made_with_them(cache_dir, timings, monkeypatch):
    timings["script"] = [("example", CLEAN)]
    conv_choice.measured_layout(GEO, "float32")
    names = [blas_choice.CACHE_FILE, "host-0123.json", "abc.nga", "abc.o", "llvm-host.json", "settings-x.json"]
    for name in names:
        (cache_dir / name).write_text("{}")
    removed = ng.forget_host_choices()
    assert removed == sorted([blas_choice.CACHE_FILE, conv_table.CACHE_FILE, "host-0123.json", "abc.nga"])
    assert sorted(p.name for p in cache_dir.iterdir()) == ["abc.o", "llvm-host.json", "settings-x.json"]
    assert conv_choice.measured_layout(GEO, "float32") == "example" and timings["calls"] == 2   # timed again


def test_retime_1_forgets_once_per_process(cache_dir, timings, monkeypatch):
    timings["script"] = [("example", CLEAN)]
    conv_choice.measured_layout(GEO, "float32")
    monkeypatch.setattr(host_choices, "_done_here", [])
    assert not host_choices.retime_if_asked()                 # unset: nothing
    monkeypatch.setenv("NNGRAPH_RETIME", "1")
    assert host_choices.retime_if_asked() and not (cache_dir / conv_table.CACHE_FILE).exists()
    conv_choice.measured_layout(GEO, "float32")
    assert not host_choices.retime_if_asked() and (cache_dir / conv_table.CACHE_FILE).exists()
    assert timings["calls"] == 2


# ----------------------------------------------------------------------------- what a hit reads

def test_a_hit_checks_its_provisional_choices_without_importing_the_lowering(cache_dir):
    """compile_cache.settled reads the table in runtime/conv_table.py; runtime/conv_choice.py
    imports the passes (about 40 ms of a hit's 50 ms)."""
    (cache_dir / conv_table.CACHE_FILE).write_text(json.dumps({"k": {"s": {"choice": "batch"}}}))
    script = ("import sys\nfrom runtime import compile_cache\n"
              "print(compile_cache.settled([['k', 's', 'batch']]), compile_cache.settled([['k', 's', 'example']]),"
              " sorted(m for m in sys.modules if m == 'runtime.conv_choice' or m.startswith('passes.lower')))")
    env = dict(os.environ, NNGRAPH_CACHE_DIR=str(cache_dir), PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "[]"], out.stdout + out.stderr


@pytest.mark.parametrize("damaged", [{"k": ["s"]}, {"k": {"s": ["batch"]}}, {"k": "x"}])
def test_a_damaged_layout_table_is_timed_again_not_an_error(cache_dir, timings, monkeypatch, damaged):
    monkeypatch.setattr(conv_choice, "host_key", lambda: "k")
    (cache_dir / conv_table.CACHE_FILE).write_text(json.dumps(damaged))
    assert not conv_table.settled([["k", "s", "batch"]])
    timings["script"] = [("example", CLEAN)]
    assert conv_choice.measured_layout(GEO, "float32") == "example" and timings["calls"] == 1
    shapes = json.loads((cache_dir / conv_table.CACHE_FILE).read_text())["k"]
    assert [e["choice"] for e in shapes.values() if isinstance(e, dict)] == ["example"]     # stored anew


def test_an_entry_refused_for_a_due_choice_is_made_again_with_it_timed_again(cache_dir, timings, monkeypatch):
    """The machine quiet when the compile cache refuses an entry made with a provisional
    layout, busy a moment later when the miss's lowering asks for the layout: it is
    timed then all the same, so the refusals end (before: the stored provisional
    choice was used, stored again with the new entry, and refused again)."""
    dep = _provisional_dependency(monkeypatch)
    quiet(monkeypatch, others=0)
    assert not conv_table.settled([dep])
    quiet(monkeypatch, others=5)
    timings["script"] = [("example", CLEAN)]
    assert conv_choice.measured_layout(GEO, "float32") == "example" and timings["calls"] == 2
    assert stored_conv_entry(cache_dir)["trust"]["retimes"] == 1
    new_process(monkeypatch)
    assert conv_table.settled([dep])


def test_a_due_choice_is_not_timed_again_while_busy_without_a_refusal(cache_dir, timings, monkeypatch):
    _provisional_dependency(monkeypatch)
    quiet(monkeypatch, others=5)
    assert conv_choice.measured_layout(GEO, "float32") == "example" and timings["calls"] == 1


def _provisional_dependency(monkeypatch):
    """A layout timed while disturbed (stored provisional), seen from a new process."""
    choices = conv_choice.MeasuredChoices()
    choices(GEO, "float32")
    (dep,) = choices.provisional
    new_process(monkeypatch)
    return dep
