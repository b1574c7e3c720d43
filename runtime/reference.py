"""target="reference": lower the graph to a Program and run it with the NumPy
Program interpreter (passes/program_interpreter.py), so every compiled function
exercises fusion and the memory plan. `GraphInterpreterRunner` (node by node on
the graph) stays available as the oracle for tests."""
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


class ProgramRunner(Runner):
    """Runs the lowered Program kernel by kernel with NumPy."""

    def __init__(self, program, check_numerics=False, graph=None):
        self.program, self.graph = program, graph
        self.check_numerics = check_numerics
        self.stats = {"kernels": program.kernel_count(),
                      "library_calls": program.stats.get("library_calls", 0),
                      "peak_bytes": 0}

    def run(self, inputs, params, env):
        from passes.memory import peak_bytes
        from passes.program_interpreter import run_program
        # a NumericsError names the kernel; Function (runtime/numerics.py) names the graph op
        outs, new = run_program(self.program, inputs, params, env, self.check_numerics)
        self.stats["peak_bytes"] = peak_bytes(self.program, env)
        return outs, new


def build(graph, options):
    from passes.lowering import to_program
    from passes.program import format_program
    program = to_program(graph, options.get("opt_level", 2))
    runner = ProgramRunner(program, options.get("check_numerics", False), graph)
    return runner, {"kernels": format_program(program)}
