"""The taps layout's side of a conv layer's timing (runtime/conv_choice.py): the
layer's products (forward, input gradient, filter gradient: those the graph makes)
lowered with every layer "taps" (passes/lower/conv_taps.py) and compiled for
target="cpu", called on random operands.

Why compiled code: the taps kernels are generated loops, so no library call can
stand in for them, whereas the other layouts' products are the BLAS calls that the
generated code makes (timed from NumPy arrays there). A call here is a whole call of
the compiled function (binding its arrays included, a few microseconds), so the
comparison leans, if anything, toward the BLAS layouts.
"""
from __future__ import annotations

import numpy as np

from passes.lower.window import window_span


def taps_call(geo: dict, dtype: str, products, examples: int, build_program):
    """A closure running the layer's `products` at `examples` examples in the taps
    layout; `build_program(program)` -> (runner, stages) is runtime/cpu.py's (passed
    in by the backend that lowers, which imports this module's chooser)."""
    graph, operands = _products_graph(geo, dtype, products, examples)
    from passes.lowering import to_program
    runner, _ = build_program(to_program(graph, 2, lambda geo, dtype, products=None: "taps"))
    return lambda: runner.run(operands, [], {})


def timing_operand(rng, shape, dtype) -> np.ndarray:
    """Random operand values for a timing, drawn in `dtype` where NumPy can (float32,
    float64: uniform in [0, 1), no denormals, about 4x faster to draw than normal
    float64 values cast down; the products and loops take as long on either)."""
    dt = np.dtype(dtype)
    if dt in (np.float32, np.float64):
        return rng.random(shape, dtype=dt)
    return rng.random(shape).astype(dt)


def _padding(geo):
    """((top, bottom), (left, right)) giving the layer's output size (the geometry keeps
    top and left; the smallest bottom and right that reach the last window)."""
    bottom = max(0, window_span(geo, "h") - geo["H"] - geo["pt"])
    right = max(0, window_span(geo, "w") - geo["W"] - geo["pl"])
    return (geo["pt"], bottom), (geo["pl"], right)


def _products_graph(geo, dtype, products, n):
    """(Graph of the products, its input arrays)."""
    import nngraph as ng
    from nngraph.graph import Graph
    from nngraph.ops.conv import conv2d_grad_filter, conv2d_grad_input
    from nngraph.size_unify import unify
    C = geo["G"] * geo["Cg"]
    attrs = dict(stride=(geo["sh"], geo["sw"]), padding=_padding(geo), dilation=(geo["dh"], geo["dw"]),
                 groups=geo["G"])
    x = ng.placeholder((n, C, geo["H"], geo["W"]), dtype, name="x")
    w = ng.placeholder((geo["O"], geo["Cg"], geo["KH"], geo["KW"]), dtype, name="w")
    y = ng.conv2d(x, w, **attrs)
    if tuple(y.shape[2:]) != (geo["OH"], geo["OW"]):
        raise ValueError(f"conv layout timing: padding {attrs['padding']} gives a {tuple(y.shape[2:])} output, "
                         f"the layer's is {(geo['OH'], geo['OW'])} (geometry {geo})")
    gy = ng.placeholder(tuple(y.shape), dtype, name="gy")
    outs = {"conv2d": lambda: y,
            "conv2d_grad_input": lambda: conv2d_grad_input(gy, w, input_hw=(geo["H"], geo["W"]), **attrs),
            "conv2d_grad_filter": lambda: conv2d_grad_filter(x, gy, kernel_hw=(geo["KH"], geo["KW"]), **attrs)}
    graph = unify(Graph([x, w, gy], [outs[p]() for p in products], [], "conv_layout_timing"))
    rng = np.random.default_rng(0)
    operands = [timing_operand(rng, tuple(t.shape), dtype) for t in (x, w, gy)]
    return graph, operands
