"""codegen/timing_trust.py: the evidence a per-host measurement gathers, the rule that
calls it disturbed, and the trust record a stored choice keeps. Fake probes only: no
test depends on how busy the machine running it is."""
import sys

import pytest
from fake_probe import FakeProbe

from codegen import timing_trust as tt


def test_an_undisturbed_measurement_has_no_reasons():
    ev = tt.Evidence(rounds=5, preemptions=4, others_running=0.5, cpus=2, spread=1.2)
    assert ev.reasons() == [] and not ev.disturbed


@pytest.mark.parametrize("evidence, reason", [
    (dict(preemptions=5), "preempted"),          # as many switches as rounds: maybe no round untouched
    (dict(others_running=1.0), "busy"),          # others on half the CPUs
    (dict(spread=1.5), "unsteady"),              # half the warm rounds 1.5x the best
])
def test_each_kind_of_disturbance_is_named(evidence, reason):
    ev = tt.Evidence(rounds=5, cpus=2, **evidence)
    (got,) = ev.reasons()
    assert got.startswith(reason) and ev.disturbed


def test_the_rule_is_in_ratios_of_the_machine():
    """The same others' load is busy on 2 CPUs and not on 64; the same switch count is
    preempted in 4 rounds and not in 40."""
    assert tt.Evidence(rounds=5, others_running=8, cpus=2).disturbed
    assert not tt.Evidence(rounds=5, others_running=8, cpus=64).disturbed
    assert tt.Evidence(rounds=4, preemptions=4).disturbed
    assert not tt.Evidence(rounds=40, preemptions=4).disturbed


def test_evidence_that_cannot_be_read_counts_as_undisturbed():
    assert tt.Evidence(rounds=3).reasons() == []


def test_the_spread_leaves_the_first_round_out():
    assert tt.spread_of([9.0, 1.0, 1.1, 1.0]) == pytest.approx(1.0)      # first touch only
    assert tt.spread_of([1.0, 1.0, 2.0, 2.0]) == pytest.approx(2.0)
    assert tt.spread_of([1.0, 1.0]) is None                               # one warm round: no spread


def test_a_watch_counts_its_switches_and_the_median_load():
    probe = FakeProbe(switches=1, running=(0, 3, 3, 0, 3))
    watch = tt.Watch(probe)               # preemptions read: 1
    for _ in range(3):
        watch.sample()
    ev = watch.evidence(rounds=4, times=[2.0, 1.0, 1.0, 1.0])
    assert ev.preemptions == 1 and ev.others_running == 3 and ev.cpus == 2 and ev.spread == pytest.approx(1.0)
    assert ev.load_per_cpu == 0.5 and ev.cpu_share is not None
    assert ev.reasons()[0].startswith("busy")


def test_what_a_watch_excludes_is_not_counted():
    probe = FakeProbe(switches=0)
    watch = tt.Watch(probe)
    with watch.excluded():
        probe.count += 50                 # compiling between rounds was preempted 50 times
    assert watch.evidence(rounds=5).preemptions == 0


def test_a_record_is_provisional_until_clean_or_retimed_enough(monkeypatch):
    monkeypatch.delenv("NNGRAPH_RETIME", raising=False)
    disturbed, clean = tt.Evidence(rounds=5, preemptions=9), tt.Evidence(rounds=5, preemptions=0)
    rec = tt.record(disturbed)
    assert tt.valid(rec) and tt.provisional(rec) and rec["retimes"] == 0
    assert rec["evidence"]["preemptions"] == 9 and rec["disturbed"]
    for n in range(1, tt.RETIMES + 1):
        assert tt.provisional(rec)
        rec = tt.record(disturbed, rec)
        assert rec["retimes"] == n
    assert not tt.provisional(rec)        # kept: a machine always busy does not re-time forever
    assert not tt.provisional(tt.record(clean)) and not tt.provisional(tt.record(clean, tt.record(disturbed)))
    assert not tt.provisional(None)       # a table written before the records: final


@pytest.mark.parametrize("rec", [[], {"disturbed": "yes", "retimes": 0}, {"disturbed": [], "retimes": -1},
                                 {"disturbed": [], "retimes": True}, {"disturbed": []}, "x"])
def test_a_damaged_record_is_not_valid(rec):
    assert not tt.valid(rec)


def test_the_retime_setting(monkeypatch):
    disturbed = tt.record(tt.Evidence(rounds=1, preemptions=3))
    assert tt.retime_mode({}) == "auto" and tt.retime_mode({"NNGRAPH_RETIME": " 1 "}) == "forget"
    assert tt.retime_mode({"NNGRAPH_RETIME": "0"}) == "never"
    assert not tt.provisional(disturbed, {"NNGRAPH_RETIME": "0"})     # kept as measured
    assert tt.provisional(disturbed, {})
    with pytest.raises(ValueError, match="NNGRAPH_RETIME.*'sometimes'"):
        tt.retime_mode({"NNGRAPH_RETIME": "sometimes"})


def test_the_system_probe_reads_this_machine():
    """On Linux every counter reads (a None there would call every measurement
    undisturbed, the checks silently off); elsewhere they may not."""
    probe = tt.SystemProbe()
    n = probe.preemptions()
    assert n is None or n >= 0
    others = probe.others_running()
    assert others is None or others >= 0
    if sys.platform.startswith("linux"):
        assert isinstance(n, int) and isinstance(others, int) and probe.load_per_cpu() is not None
        assert tt._own_running() >= 1                                   # at least this thread
        ev = tt.Watch().evidence(rounds=1)
        assert ev.preemptions is not None and ev.others_running is not None
    assert probe.cpus() >= 1 and probe.wall() > 0
    ev = tt.Watch().evidence(rounds=1)
    assert isinstance(ev.to_json(), dict) and ev.to_json()["rounds"] == 1


def test_a_provisional_choice_is_due_only_while_the_machine_is_not_busy(monkeypatch):
    monkeypatch.delenv("NNGRAPH_RETIME", raising=False)
    disturbed, clean = tt.record(tt.Evidence(rounds=1, preemptions=3)), tt.record(tt.Evidence(rounds=1))
    monkeypatch.setattr(tt, "system_probe", lambda: FakeProbe(running=(1,), cpus=2))
    assert not tt.due(disturbed) and not tt.due(clean)          # busy now: wait
    monkeypatch.setattr(tt, "system_probe", lambda: FakeProbe(running=(0,), cpus=2))
    assert tt.due(disturbed) and not tt.due(clean) and not tt.due(None)
    assert not tt.due(disturbed, {"NNGRAPH_RETIME": "0"})
