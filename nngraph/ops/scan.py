"""`scan`: a loop in the graph, and `scan_output`, which reads one of its results.

Representation (the interface the lowering and the layers build on)
-------------------------------------------------------------------
Every node has one type, so a loop with several results is two kinds of node:

    %5 = scan %h0, %xs, %W {length=T, reverse=false} : (f32[N,64], f32[T,N,64]) {
      ^(%carry0: f32[N,64]; %x0: f32[N,32]; %W: f32[32,64]):
      %0 = matmul %x0, %W : f32[N,64]
      %1 = tanh %0 : f32[N,64]
      yield %1; %1
    }
    %6 = scan_output %5 {index=0} : f32[N,64]       # the final carry
    %7 = scan_output %5 {index=1} : f32[T,N,64]     # the stacked ys

- **`scan`** (kind "special"). Inputs, in order: the initial carries (`n_carry`), the
  scanned tensors xs (`n_xs`, time on axis 0), the closed-over values (`n_closure`:
  parameters, outer placeholders and outer intermediate values the step reads).
  Attributes: `body` (a `nngraph.scan_body.Body`: the step as a Graph whose inputs
  are placeholders for exactly those inputs, carry slices xs[t] in place of xs, and
  whose outputs are the new carries then the per-step ys), `length` (the number of
  steps: an int or a `Dim`, equal to every xs' axis 0) and `reverse` (steps run
  t = length-1 .. 0; ys[t] is still the result of step t, as jax.lax.scan).
  Its type is a `TupleType` whose `parts` are the results: the final carries (the
  carries' types), then each y stacked, `(length,) + y.shape`. As a tensor the scan
  node is an empty bool[0]: it holds no data of its own; only scan_output reads it.
- **`scan_output {index=i}`** (kind "special"): result i of its one input, a scan
  node; an ordinary tensor of type `parts[i]`. Every use of a loop result goes through
  one; a scan whose results nobody reads is dead code like any node.

Steps run in order, each on the carry the previous step returned; the body graph is
evaluated once per step with carry_in = the carry, xs_in = xs[t], closure_in = the
closed-over values (the same every step). Length 0 returns the initial carries and
empty ys.

What the passes do with it: outer-graph passes see a scan as one opaque node with
its inputs (CSE merges structurally equal scans: `Body` compares structurally; DCE,
verification, graphviz, the report work unchanged). Size unification renames sizes
inside bodies too (nngraph/size_unify.py), and the scan's type check joins the
body's sizes with the outer ones. verify (passes/verify.py) checks every body as a
graph of its own. passes/pipeline.py runs every graph pass inside the bodies first
(passes/scans.py `in_bodies`; a pass with `outer_only = True` is not), merges a
forward scan into its twin that also stores the gradient's residuals
(`merge_scan_twins`) and drops ys nobody reads (`prune_scan_outputs`). The reference
interpreter runs a scan node by node (`_scan_ref` below). The loop passes move work
out of it (passes/loop_hoist.py, passes/loop_sink.py) and passes/lower/scan.py lowers it
to a ScanLoop of the Program (passes/loop.py), which every target runs. The call-time
index checks (nngraph/index_guards.py) reach into bodies (nngraph/loop_guards.py): ids
that are a step of an xs or a closed-over value are checked whole before the loop; ids
computed in the step add per-step counts to the scan as extra ys, summed outside it.

Helpers: `results(scan)` builds the scan_output nodes of every result;
`length_of(scan)` is the number of steps; `Body` (nngraph/scan_body.py) gives
carry_in / xs_in / closure_in / carry_out / ys_out.

Gradient: the vjp of a scan is another scan, running the other way
(nngraph/scan_grad.py documents what it stores and where).
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..node import Op, register
from ..scan_body import Body, results  # noqa: F401  (results: part of this module's interface)
from ..sizes import join
from ..source_location import user_location
from ..types import Dim, TensorType, TupleType, np_dtype


def _fit(what: str, given: TensorType, want: TensorType) -> None:
    """given must be want (dynamic sizes may join, as everywhere in nngraph/sizes.py)."""
    ok = given.dtype == want.dtype and given.ndim == want.ndim
    if ok:
        ok = all(join(a, b) is not None for a, b in zip(given.shape, want.shape))
    if not ok:
        raise ShapeError(f"scan (built at {user_location()}): {what} is {given} but the step takes {want}")


def _scan_infer(inputs, attrs) -> TupleType:
    body, length = attrs["body"], attrs["length"]
    if not isinstance(body, Body):
        raise ShapeError(f"scan: attribute body must be a scan Body, got {type(body).__name__}")
    if len(inputs) != len(body.graph.inputs):
        raise ShapeError(f"scan (built at {user_location()}): {len(inputs)} operands for a body of "
                         f"{len(body.graph.inputs)} inputs")
    k, nx = body.n_carry, body.n_xs
    for i, (a, p) in enumerate(zip(inputs[:k], body.carry_in)):
        _fit(f"initial carry {i} ({a.name or a.op} built at {a.where})", a.type, p.type)
    for i, (a, p) in enumerate(zip(inputs[k:k + nx], body.xs_in)):
        if a.ndim != p.ndim + 1 or join(a.shape[0], length) is None:
            raise ShapeError(f"scan (built at {user_location()}): xs {i} ({a.name or a.op}: {a.type} built "
                             f"at {a.where}) must have {length} steps on axis 0, then {p.type}")
        _fit(f"a step of xs {i} ({a.name or a.op} built at {a.where})", TensorType(a.dtype, a.shape[1:]), p.type)
    for i, (a, p) in enumerate(zip(inputs[k + nx:], body.closure_in)):
        _fit(f"closed-over value {i} ({a.name or a.op} built at {a.where})", a.type, p.type)
    for i, (c, o) in enumerate(zip(body.carry_in, body.carry_out)):
        if c.type != o.type:
            raise ShapeError(f"scan (built at {user_location()}): the step returns carry {i} as {o.type} "
                             f"(built at {o.where}) but takes it as {c.type}; a carry keeps its type")
    ys = [TensorType(y.dtype, (length,) + tuple(y.shape)) for y in body.ys_out]
    return TupleType([c.type for c in body.carry_in] + ys)


def _scan_ref(ctx, *arrays):
    """Run the body once per step with the reference interpreter."""
    from ..interpreter import Plan
    body, n = ctx.attrs["body"], ctx.resolve_size(ctx.attrs["length"])
    k, nx = body.n_carry, body.n_xs
    carry, xs, closure = list(arrays[:k]), arrays[k:k + nx], list(arrays[k + nx:])
    parts = ctx.node.type.parts
    ys = [np.empty(ctx.resolve(p.shape), np_dtype(p.dtype)) for p in parts[k:]]
    plan = Plan(body.graph.outputs, ctx.check_numerics)
    for t in (range(n - 1, -1, -1) if ctx.attrs["reverse"] else range(n)):
        outs = plan.run(dict(zip(body.graph.inputs, carry + [x[t] for x in xs] + closure)), ctx.env)
        carry = outs[:k]
        for y, v in zip(ys, outs[k:]):
            y[t] = v
    return tuple(np.array(c, copy=True) for c in carry) + tuple(ys)


def _scan_vjp(n, g, needs):
    from ..scan_grad import scan_vjp
    return scan_vjp(n, g, needs)


register(Op("scan", "special", _scan_infer, _scan_ref, _scan_vjp,
            doc="a loop: the body graph run once per step on the carry and xs[t]; results are read "
                "with scan_output (final carries, then stacked ys)"))


def _output_infer(inputs, attrs) -> TensorType:
    (s,) = inputs
    i = attrs["index"]
    if not isinstance(s.type, TupleType):
        raise ShapeError(f"scan_output: its operand must be a scan, got {s.op}: {s.type} built at {s.where}")
    if not 0 <= i < len(s.type.parts):
        raise ShapeError(f"scan_output: index {i} out of range for {s.type} (built at {s.where})")
    return s.type.parts[i]


def _output_vjp(n, g, needs):
    """The cotangent of a multi-result node is a dict {result index: cotangent}
    (nngraph/autodiff.py adds such dicts key by key)."""
    return ({n.attrs["index"]: g},)


register(Op("scan_output", "special", _output_infer, lambda ctx, s: s[ctx.attrs["index"]], _output_vjp,
            doc="result `index` of a scan (final carries first, then the stacked ys)"))


def length_of(node) -> int | Dim:
    """The number of steps of a scan node."""
    return node.attrs["length"]
