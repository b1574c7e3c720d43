"""target="reference": run the graph on the NumPy reference interpreter."""
from __future__ import annotations

from nngraph.interpreter import evaluate

from .function import Runner


class GraphInterpreterRunner(Runner):
    """Interprets the (optimised) graph node by node. Slow; the oracle."""

    def __init__(self, graph, check_numerics=False):
        self.graph = graph
        self.params = graph.params()
        self.check_numerics = check_numerics
        self.stats = {"kernels": 0, "library_calls": 0}

    def run(self, inputs, params, env):
        feeds = dict(zip(self.graph.inputs, inputs))
        pmap = {id(p): v for p, v in zip(self.params, params)}
        roots = list(self.graph.outputs) + [v for _, v in self.graph.updates]
        vals = evaluate(roots, feeds, env, pmap, self.check_numerics)
        n = len(self.graph.outputs)
        return vals[:n], vals[n:]


def build(graph, options):
    return GraphInterpreterRunner(graph, options.get("check_numerics", False)), {}
