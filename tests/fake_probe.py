"""A scripted stand-in for codegen/timing_trust.SystemProbe: tests of per-host choices
that must not depend on how busy the machine running them is."""


class FakeProbe:
    """Counters a test scripts: `switches` added to the preemption count at each read,
    `running` the others' running threads read in turn, clocks that advance 1 s a read."""

    def __init__(self, switches=0, running=(0,), cpus=2, load=0.5):
        self.count, self.switches, self.running, self._cpus, self.load = 0, switches, list(running), cpus, load
        self.reads, self.clock = 0, 0.0

    def preemptions(self):
        self.count += self.switches
        return self.count

    def others_running(self):
        self.reads += 1
        return self.running[(self.reads - 1) % len(self.running)]

    def cpus(self):
        return self._cpus

    def load_per_cpu(self):
        return self.load

    def thread_cpu(self):
        return self.clock / 2

    def wall(self):
        self.clock += 1.0
        return self.clock
