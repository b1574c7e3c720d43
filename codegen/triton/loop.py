"""A ScanLoop (passes/loop.py) on target="gpu": one host loop of launches.

The loop's launcher `launch_kN(b, sizes...)` copies each carry's initial value
into its state tensor, then per step points every step buffer at its slice of the
stacked tensor (`b["x_t"] = b["xs"][t]`, a view: no copy; views of a step buffer
are made again), launches the body's kernels with their own launchers (the same
Triton kernels as top-level ones), and copies each carry's new value into its
state (`Tensor.copy_`, one device copy). So a step is one launch sequence from the
host; with CUDA graphs (runtime/gpu_replay.py) the whole sequence is captured for
a given length like any other.
"""
from __future__ import annotations

from passes.loop import copies_after_step, copies_before_loop
from passes.program import pointer_buffer

from .names import size_expr, symbol_name, symbols_of


class ScanLoopPrinter:
    """Prints a loop's body kernels (through `make_printer`) and the loop's launcher."""

    def __init__(self, program, loop, fname, bufnames, make_printer):
        self.p, self.k, self.fname, self.bufnames = program, loop, fname, bufnames
        self.body = [make_printer(kern, f"{fname}_{n}") for n, kern in enumerate(loop.body)]
        self.helpers = set()

    def symbols(self) -> list:
        syms = symbols_of([self.k.length])
        for pr in self.body:
            syms |= set(pr.symbols())
        return sorted(syms)

    def kernel_source(self) -> str:
        srcs = [pr.kernel_source() for pr in self.body]       # printing collects the helpers used
        for pr in self.body:
            self.helpers |= pr.helpers
        parts = []
        for pr, src in zip(self.body, srcs):
            parts += [src, pr.launcher_source()]
        return "\n\n".join(p.rstrip("\n") for p in parts)

    def _step_views(self) -> list:
        """(view name, step buffer name, shape) of each view of a step buffer of this loop."""
        steps = {s.step for s in self.k.slices}
        out = []
        for buf in self.p.buffers.values():
            if buf.kind == "view" and pointer_buffer(self.p.buffers, buf.id) in steps:
                out.append((self.bufnames[buf.id], self.bufnames[pointer_buffer(self.p.buffers, buf.id)],
                            buf.shape))
        return out

    def launcher_source(self) -> str:
        name = self.bufnames
        syms = [symbol_name(s) for s in self.symbols()]
        out = [f"def launch_{self.fname}(b{''.join(', ' + s for s in syms)}):",
               f'    """{"reverse " if self.k.reverse else ""}loop {self.k.name}: one launch sequence per step."""']
        for state, init in copies_before_loop(self.p, self.k):
            out.append(f"    b[{name[state]!r}].copy_(b[{name[init]!r}])")
        length = size_expr(self.k.length)
        out.append(f"    for t in range({length}):")
        at = f"{length} - 1 - t" if self.k.reverse else "t"
        for sl in self.k.slices:
            out.append(f"        b[{name[sl.step]!r}] = b[{name[sl.stacked]!r}][{at}]")
        for view, step, shape in self._step_views():
            dims = ", ".join(size_expr(s) for s in shape)
            out.append(f"        b[{view!r}] = b[{step!r}].view(({dims}{',' if len(shape) == 1 else ''}))")
        for pr in self.body:
            args = "".join(", " + symbol_name(s) for s in pr.symbols())
            out.append(f"        launch_{pr.fname}(b{args})")
        for state, nxt in copies_after_step(self.p, self.k):
            out.append(f"        b[{name[state]!r}].copy_(b[{name[nxt]!r}])")
        return "\n".join(out) + "\n"
