"""How far a timing can be trusted: evidence gathered while a per-host choice is
measured, the rule that calls the measurement "disturbed", and what a stored choice
records of it (the one home of these rules; codegen/host.py, codegen/llvm/blas_choice.py
and runtime/conv_choice.py use them).

A choice measured once per host and kept (a conv layer's layout, the BLAS, the cost of
a thread start or a pool hand-off) is only as good as the moment it was timed: on a
machine busy with other work a layout timed at a load of 15 made ResNet-50 take 65 ms
instead of 36, for good. Other processes distort a timing in ways one clock does not
show: they preempt the measuring thread (wall time grows, its CPU time does not), and
they share the cores' caches, memory bandwidth and, on SMT, a core's execution units
(its CPU time grows too). So a measurement gathers evidence that does not depend on
what this CPU is, only on what the operating system says happened while it ran
(`Watch`, `Evidence`):

- `preemptions`: involuntary context switches of the measuring thread during it
  (getrusage RUSAGE_THREAD ru_nivcsw): each one is another thread taking its CPU;
- `others_running`: threads of other processes ready to run or running, sampled
  between the rounds (/proc/loadavg's running count less this process's running
  threads), against `cpus`, the machine's CPUs (the count is machine-wide);
- `spread`: the chosen candidate's median warm round over its best one (the first
  round is left out: it pays first-touch costs no later call pays);
- for the record only: the one-minute load average per CPU (it carries the past
  minute, so it would call a quiet measurement after a burst disturbed and the reverse)
  and the measuring thread's CPU time over the wall time (low also where the
  measurement sleeps or waits for its BLAS's threads, which is not a disturbance).

The rule (`Evidence.reasons`), in ratios only, none fitted to a CPU:

- preempted: at least as many preemptions as the chosen candidate has rounds
  (PREEMPTIONS_PER_ROUND). A choice keeps each candidate's best round; with fewer
  preemptions than rounds at least one round of every candidate could have run
  untouched, with as many it is possible that none did;
- busy: others ran on at least BUSY_SHARE of the CPUs in at least half the samples
  (the median). Then, with two hardware threads a core, others are on a sibling of
  our CPUs in the usual placement, and at any size at least as many cores as ours
  draw on the shared cache and memory bandwidth; preemption counts and CPU time do
  not see that;
- unsteady: `spread` of at least SPREAD: half the chosen candidate's warm rounds ran
  at least half as long again as its best, which repeating the same work on the same
  data does not do on an undisturbed machine; something the counters do not see
  (a sibling's work, throttling) changed the rate.

Evidence that cannot be read (no RUSAGE_THREAD, no /proc/loadavg: not Linux) counts as
undisturbed: the measurement is kept as before these checks.

A stored choice carries a trust record (`record`): its evidence, the reasons it was
disturbed (none: final) and how often it was re-timed. A disturbed one is provisional:
used, and measured again by a later process that finds the machine not busy (`due`),
up to RETIMES times; then the last measurement is kept for good, so a machine that is
always busy does not re-time forever.
An entry without a record (a table written before these checks) is final, as it was.
NNGRAPH_RETIME=1 (runtime/host_choices.py) drops every stored choice instead;
NNGRAPH_RETIME=0 keeps every measurement as it was taken (nothing is provisional).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time

PREEMPTIONS_PER_ROUND = 1.0   # preempted: preemptions >= this x the chosen candidate's rounds
BUSY_SHARE = 0.5              # busy: the median of others' running threads >= this x the CPUs
SPREAD = 1.5                  # unsteady: median warm round / best warm round >= this
RETIMES = 3                   # a disturbed choice is measured again at most this many times


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What the operating system saw while one measurement ran (see the module
    docstring); None where it could not be read."""
    rounds: int
    preemptions: int | None = None
    others_running: float | None = None
    cpus: int = 1
    spread: float | None = None
    load_per_cpu: float | None = None
    cpu_share: float | None = None

    def reasons(self) -> list:
        """Why the measurement was disturbed ([] when it was not): "preempted", "busy",
        "unsteady", each with its figures."""
        out = []
        if self.preemptions is not None and self.preemptions >= PREEMPTIONS_PER_ROUND * max(1, self.rounds):
            out.append(f"preempted: {self.preemptions} involuntary switches in {self.rounds} rounds")
        if self.others_running is not None and self.others_running >= BUSY_SHARE * max(1, self.cpus):
            out.append(f"busy: {self.others_running:g} threads of others running on {self.cpus} CPUs")
        if self.spread is not None and self.spread >= SPREAD:
            out.append(f"unsteady: median round {self.spread:.2f}x the best")
        return out

    @property
    def disturbed(self) -> bool:
        return bool(self.reasons())

    def to_json(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()
                if v is not None}


def spread_of(rounds) -> float | None:
    """The median of the warm rounds (all but the first) over the best of them; None
    with fewer than two warm rounds."""
    import statistics               # here: a compile-cache hit imports this module, never measures
    warm = [float(t) for t in list(rounds)[1:]]
    if len(warm) < 2 or min(warm) <= 0:
        return None
    return statistics.median(warm) / min(warm)


# ----------------------------------------------------------------------------- reading the system

class SystemProbe:
    """The counters a Watch reads, from the operating system (tests give a fake)."""

    def preemptions(self) -> int | None:
        try:
            import resource
            return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
        except (ImportError, AttributeError, OSError, ValueError):
            return None

    def others_running(self) -> int | None:
        """Threads running or ready to run machine-wide less this process's."""
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        return max(0, running - _own_running()) if running > 1 else 0   # only the reader: no scan

    def cpus(self) -> int:
        return os.cpu_count() or 1

    def load_per_cpu(self) -> float | None:
        try:
            return os.getloadavg()[0] / self.cpus()
        except (AttributeError, OSError):
            return None

    def thread_cpu(self) -> float:
        return time.thread_time()

    def wall(self) -> float:
        return time.perf_counter()


def _own_running() -> int:
    """This process's threads in state R (running or runnable): at least the caller."""
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        count += state == "R"
    return max(1, count)


def system_probe():
    """The probe a Watch uses by default (a test replaces this function)."""
    return SystemProbe()


class Watch:
    """Evidence of one measurement: made as it starts, `sample()` between its rounds,
    `evidence(rounds, times)` as it ends."""

    def __init__(self, probe=None):
        self.probe = probe if probe is not None else system_probe()
        self._preemptions = self.probe.preemptions()
        self._cpu, self._wall = self.probe.thread_cpu(), self.probe.wall()
        self._running = []
        self.sample()

    @contextlib.contextmanager
    def excluded(self):
        """A block that is not part of the measurement (compiling code between two
        rounds): its preemptions, CPU and wall time are left out."""
        preemptions, cpu, wall = self.probe.preemptions(), self.probe.thread_cpu(), self.probe.wall()
        try:
            yield
        finally:
            now = self.probe.preemptions()
            if now is not None and preemptions is not None and self._preemptions is not None:
                self._preemptions += now - preemptions
            self._cpu += self.probe.thread_cpu() - cpu
            self._wall += self.probe.wall() - wall

    def sample(self) -> None:
        """Read the others' running threads now (between two rounds)."""
        n = self.probe.others_running()
        if n is not None:
            self._running.append(n)

    def evidence(self, rounds: int, times=()) -> Evidence:
        """The evidence since the Watch began: `rounds` the chosen candidate's round count,
        `times` its rounds' seconds (for the spread; none: not judged)."""
        import statistics
        self.sample()
        now = self.probe.preemptions()
        wall = self.probe.wall() - self._wall
        cpu = self.probe.thread_cpu() - self._cpu
        return Evidence(rounds=int(rounds),
                        preemptions=None if now is None or self._preemptions is None else now - self._preemptions,
                        others_running=statistics.median(self._running) if self._running else None,
                        cpus=self.probe.cpus(), spread=spread_of(times),
                        load_per_cpu=self.probe.load_per_cpu(), cpu_share=cpu / wall if wall > 0 else None)


# ----------------------------------------------------------------------------- what a stored choice records

def record(evidence: Evidence, previous=None) -> dict:
    """The trust record of a choice measured with `evidence`; `previous` is the record
    of the provisional choice this measurement re-times (None: a first measurement)."""
    retimes = previous["retimes"] + 1 if previous is not None else 0
    return {"evidence": evidence.to_json(), "disturbed": evidence.reasons(), "retimes": retimes}


def valid(rec) -> bool:
    """Is `rec` a trust record as `record` writes it, or None (a table written before
    these checks: the choice is final)? A damaged one is measured again."""
    if rec is None:
        return True
    return (isinstance(rec, dict) and isinstance(rec.get("disturbed"), list)
            and isinstance(rec.get("retimes"), int) and not isinstance(rec.get("retimes"), bool)
            and rec["retimes"] >= 0 and isinstance(rec.get("evidence", {}), dict))


def provisional(rec, env=None) -> bool:
    """A choice measured while disturbed, to be measured again (fewer than RETIMES
    re-times so far, and NNGRAPH_RETIME not 0)."""
    return rec is not None and bool(rec["disturbed"]) and rec["retimes"] < RETIMES and retime_mode(env) != "never"


def due(rec, env=None) -> bool:
    """Is a stored choice to be measured again now: provisional, and the machine not
    busy at this moment (others running on fewer than BUSY_SHARE of the CPUs; one
    reading). A re-timing on a machine still busy would most likely be disturbed
    again, cost its time (seconds, under a load of 10 on 2 cores) and use up one of
    the RETIMES; so it waits, the provisional choice in use, for a quieter moment."""
    if not provisional(rec, env):
        return False
    probe = system_probe()
    others = probe.others_running()
    return others is None or others < BUSY_SHARE * max(1, probe.cpus())


def retime_mode(env=None) -> str:
    """NNGRAPH_RETIME: "forget" (1, yes, true, on: drop the stored choices and measure
    them again, runtime/host_choices.py), "never" (0, no, false, off: a measurement is
    final whatever its evidence, as before these checks; the stored records still say
    what was seen) or "auto" (unset or empty: a disturbed one is provisional)."""
    raw = (os.environ if env is None else env).get("NNGRAPH_RETIME", "").strip().lower()
    if raw == "":
        return "auto"
    if raw in ("1", "yes", "true", "on"):
        return "forget"
    if raw in ("0", "no", "false", "off"):
        return "never"
    raise ValueError(f"NNGRAPH_RETIME must be 1 (drop the stored per-host choices and time them again), "
                     f"0 (keep every measurement, disturbed or not) or unset, got {raw!r}")
