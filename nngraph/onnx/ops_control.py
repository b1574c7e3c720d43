"""ONNX Loop and If: control flow from subgraphs.

Loop needs its trip count M at import (an initializer, a constant expression, or a
graph input the conformance backend binds): nngraph's shapes are static or symbolic,
and a Loop's scan outputs are as long as the loop runs. It becomes an ng.scan of
length M whose step is the imported body, fed the iteration number as the scanned
input; the condition is carried as a flag. When the body may end the loop early (its
condition is computed at run time), each step keeps the previous carried values once
the flag is false, so the final values are those of the last iteration ONNX runs; such
a loop may not have scan outputs (their length would be known only at run time) and
is refused by name. A body that needs the iteration number at import (as a Slice
bound, say) cannot be one traced step: the loop is unrolled instead, M copies of the
body with the iteration number a constant, up to UNROLL_MAX iterations.

If with a condition known at import imports only the branch taken (so a branch that
only that condition makes valid is never converted). With a condition computed at
run time both branches are imported and each output is `where(cond, then, else)`:
ONNX branches are pure functions of the values they read, so computing both and
selecting gives the taken branch's values, and the gradient flows into the taken
branch only. It costs the other branch's work, and it needs both branches to give
each output the same type; branches of different types are refused by name
(a proper conditional node would be needed for those, and nngraph has none).
"""
from __future__ import annotations

import numpy as np

from ..node import Tensor
from ..ops import elementwise as ew
from ..ops import movement as mv
from ..scan_build import scan
from .registry import NotKnownAtImport, converter

UNROLL_MAX = 256  # iterations of a Loop unrolled at import when its body needs the iteration number as a constant


def _flag(ctx, v, what: str):
    """A one-element bool condition as a 0-d value: a Python bool when known at import."""
    if isinstance(v, Tensor):
        if v.dtype != "bool" or not all(isinstance(s, int) for s in v.shape) or int(np.prod(v.shape)) != 1:
            raise ctx.error(f"{what} must be a one-element bool tensor, got {v.type}")
        return mv.reshape(v, ())
    a = np.asarray(v)
    if a.dtype != np.bool_ or a.size != 1:
        raise ctx.error(f"{what} must be a one-element bool tensor, got {a.dtype}{list(a.shape)}")
    return bool(a.reshape(-1)[0])


def _select(flag, new: list, old: list) -> list:
    """new where the loop still runs, old once it has stopped."""
    return [ew.where(flag, a, b) for a, b in zip(new, old)]


def _trip_count(ctx) -> int:
    if not ctx.has(0):
        raise ctx.error("a Loop without a trip count (input M) is not supported: it would run until its "
                        "condition turns false, a number of steps known only at run time")
    m = int(np.asarray(ctx.const(0, "trip count M")).reshape(-1)[0])
    return max(m, 0)


@converter("Loop", 1, attrs=("body",))
def _loop(ctx):
    trips = _trip_count(ctx)
    n_carried = len(ctx.node.input) - 2
    n_scan = len(ctx.attrs["body"].g.output) - 1 - n_carried if "body" in ctx.attrs else 0
    if n_carried < 0 or n_scan < 0:
        raise ctx.error(f"its body's {len(ctx.attrs['body'].g.output)} outputs do not fit "
                        f"its {len(ctx.node.input)} inputs (M, cond, {n_carried} carried values)")
    cond = _flag(ctx, ctx.values[1], "input cond") if ctx.has(1) else True
    if isinstance(cond, Tensor) and n_scan:  # how many iterations run must then be known at import
        cond = _flag(ctx, ctx.const(1, "cond (the Loop has scan outputs, whose length it decides)"), "input cond")
    try:
        return _loop_scan(ctx, trips, cond, n_carried, n_scan)
    except NotKnownAtImport:
        if trips > UNROLL_MAX:
            raise
    return _loop_unrolled(ctx, trips, cond, n_carried, n_scan)


def _early_exit_error(ctx, n_scan: int):
    return ctx.error(f"its condition is computed at run time and it has {n_scan} scan outputs, whose "
                     "length would be known only at run time: not supported")


def _loop_scan(ctx, trips: int, cond, n_carried: int, n_scan: int) -> list:
    """The Loop as one ng.scan of `trips` steps over the iteration numbers."""
    init = [ctx.t(2 + i) for i in range(n_carried)]
    running = ew.constant(np.asarray(cond)) if not isinstance(cond, Tensor) else cond
    always = cond is True

    def step(carry, i):
        flag, vals = carry[0], list(carry[1:])
        outs = ctx.subgraph("body", [i, flag] + vals)
        new = [ctx.tensor(o, "a carried value the body returns") for o in outs[1:1 + n_carried]]
        ys = [ctx.tensor(o, "a scan output of the body") for o in outs[1 + n_carried:]]
        done = outs[0]
        if always and (done is flag or (not isinstance(done, Tensor) and _flag(ctx, done, "cond_out"))):
            return (flag, *new), tuple(ys)
        if ys:
            raise _early_exit_error(ctx, n_scan)
        keep = ew.logical_and(flag, _flag(ctx, done, "the body's condition output")
                              if isinstance(done, Tensor) else ew.constant(np.asarray(bool(np.asarray(done)))))
        return (keep, *_select(flag, new, vals)), ()

    final, ys = scan(step, (running, *init), np.arange(trips, dtype=np.int64))
    return list(final[1:]) + list(ys)


def _loop_unrolled(ctx, trips: int, cond, n_carried: int, n_scan: int) -> list:
    """The Loop as `trips` copies of its body, the iteration number a constant in each."""
    vals = [ctx.values[2 + i] for i in range(n_carried)]
    ys: list = [[] for _ in range(n_scan)]
    for i in range(trips):
        if cond is False:
            break
        outs = ctx.subgraph("body", [np.asarray(i, np.int64), np.asarray(cond) if isinstance(cond, bool) else cond]
                            + vals)
        new, done = outs[1:1 + n_carried], _flag(ctx, outs[0], "the body's condition output")
        if isinstance(cond, Tensor):
            if n_scan:
                raise _early_exit_error(ctx, n_scan)
            vals = _select(cond, [ctx.tensor(v) for v in new], [ctx.tensor(v) for v in vals])
            cond = ew.logical_and(cond, done if isinstance(done, Tensor) else ew.constant(np.asarray(done)))
            continue
        vals, cond = new, done
        for y, v in zip(ys, outs[1 + n_carried:]):
            y.append(v)
    if n_scan and not ys[0]:
        raise ctx.error("a Loop that runs no iteration and has scan outputs is not supported when unrolled "
                        "(the outputs' element type and shape come from the body)")
    return vals + [mv.stack([ctx.tensor(v) for v in y], 0) for y in ys]


@converter("If", 1, attrs=("then_branch", "else_branch"))
def _if(ctx):
    if not ctx.has(0):
        raise ctx.error("input cond is required")
    cond = _flag(ctx, ctx.values[0], "input cond")
    if not isinstance(cond, Tensor):
        return ctx.subgraph("then_branch" if cond else "else_branch", [])
    then, other = ctx.subgraph("then_branch", []), ctx.subgraph("else_branch", [])
    if len(then) != len(other):
        raise ctx.error(f"then_branch gives {len(then)} outputs and else_branch {len(other)}")
    outs = []
    for k, (a, b) in enumerate(zip(then, other)):
        a, b = ctx.tensor(a, f"output {k} of then_branch"), ctx.tensor(b, f"output {k} of else_branch")
        if a.type != b.type:
            raise ctx.error(f"output {k}: then_branch computes {a.type} and else_branch {b.type}; with a "
                            "condition computed at run time nngraph computes both branches and selects, "
                            "which needs one type")
        outs.append(ew.where(cond, a, b))
    return outs
