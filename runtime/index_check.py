"""A Runner wrapper that turns the out-of-range counts of nngraph/index_guards.py into
an InputError before the Function commits anything."""
from __future__ import annotations

from nngraph.index_guards import raise_if_out_of_range

from .function import Runner


class IndexCheckedRunner(Runner):
    """Runs `inner` on a graph whose last outputs are the guards' (counts first, see
    nngraph/index_guards.py); returns the other outputs, or raises InputError when a
    count is not 0."""

    def __init__(self, inner: Runner, guards: list, placeholders: list):
        self.inner, self.guards, self.placeholders = inner, guards, placeholders

    def __getattr__(self, name):   # compiled, program, ... are the inner runner's
        return getattr(self.__dict__["inner"], name)

    # what the Function asks of its runner about device arrays is the inner runner's
    keeps_device_values = property(lambda self: self.inner.keeps_device_values)
    fresh_results = property(lambda self: self.inner.fresh_results)

    def input_keys(self, args):
        return self.inner.input_keys(args)

    def device_array(self, value, label: str, expected: str):
        return self.inner.device_array(value, label, expected)

    def to_device(self, array):
        return self.inner.to_device(array)

    def fits_on_device(self, nbytes: int) -> bool:
        return self.inner.fits_on_device(nbytes)

    @property
    def stats(self):
        return self.inner.stats

    @property
    def stages(self):
        return self.inner.stages

    def run(self, inputs, params, env):
        outs, new = self.inner.run(inputs, params, env)
        k = sum(gd.n_outputs for gd in self.guards)
        feeds = {id(p): a for p, a in zip(self.placeholders, inputs)}
        raise_if_out_of_range(self.guards, outs[len(outs) - k:], env, feeds)
        return outs[:len(outs) - k], new
