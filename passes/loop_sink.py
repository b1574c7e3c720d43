"""Work of a scan that the next step does not need moves after the loop, over all
steps at once (the mirror of passes/loop_hoist.py).

The backward scan of an RNN carries, besides the cotangent of the hidden state,
one accumulator per weight: `gW += x_tᵀ @ dz_t`, `gb += sum(dz_t, 0)`, and returns
the input gradient `dx_t = dz_t @ Wᵀ` per step. None of these feeds the next step.
Kept in the loop they cost T small products each; after the loop they are ONE
product over all steps: the loop stores dz_t per step (a stacked ys), and

    gW = gW0 + sum_t x_tᵀ dz_t   = gW0 + Xᵀ·dZ with X, dZ as (T·N, F), (T·N, H)
    gb = gb0 + sum(dZ, (0, 1))
    dX = dZ @ Wᵀ                 (T·N rows: one GEMM)

What moves:

- an *accumulator*: a carry whose new value is `add(carry, g)` where the carry has
  no other reader and g is `sum(d, axes)` (or a reshape of one) or `matmul(aᵀ, d)`
  of per-step matrices, or an elementwise expression of per-step values;
- a *per-step result* (a ys) that the carries do not need and that holds a matmul
  (purely elementwise ys stay fused in the step);

provided everything they compute from per-step values is elementwise or a matmul
(batched with the time axis in front, as loop_hoist does). The values of the loop
they read become stacked ys of the loop ("boundaries"). The sum over steps of a
matmul accumulator is written `sum(matmul(transpose(A, (0, 2, 1)), D), axes=(0,))`,
which passes/lower/matmul.py runs as one GEMM over T·N rows. The log counts
"sink:accumulator" and "sink:ys".
"""
from __future__ import annotations

from nngraph.graph import Graph, toposort, users as graph_users
from nngraph.node import OPS, make
from nngraph.types import is_float

from .log import Rewrites
from .loop_hoist import batch_out_of_loop
from .rewrite import rebuild


def sink_scans(graph: Graph, counts: Rewrites | None = None) -> Graph:
    """Every scan of `graph` with its accumulators and carry-free ys moved after the loop."""
    counts = Rewrites() if counts is None else counts
    if not any(n.op == "scan" for n in graph.nodes()):
        return graph
    new, replaced = {}, {}
    for n in toposort(list(graph.inputs) + graph.roots()):
        if n.op == "scan_output" and id(n.inputs[0]) in replaced:
            new[id(n)] = replaced[id(n.inputs[0])][n.attrs["index"]]
            continue
        m = rebuild(n, [new[id(i)] for i in n.inputs])
        if m.op == "scan":
            done = _Sink(m).run(counts)
            if done is not None:
                replaced[id(n)] = done
        new[id(n)] = m
    return Graph(list(graph.inputs), [new[id(o)] for o in graph.outputs],
                 [(p, new[id(v)]) for p, v in graph.updates], graph.name)


def _batchable(n) -> bool:
    if OPS[n.op].kind == "elementwise":
        return bool(n.inputs)
    return n.op == "matmul" and all(i.ndim >= 2 for i in n.inputs)


class _Sink:
    """The analysis and rewrite of one scan node."""

    def __init__(self, scan):
        self.scan = scan
        self.body = body = scan.attrs["body"]
        self.k, self.nx = body.n_carry, body.n_xs
        self.users = graph_users(body.nodes())

    # ------------------------------------------------------------------ analysis
    def _accumulated(self, i):
        """g when carry i's new value is add(carry, g) and the carry has no other reader."""
        body = self.body
        o, c = body.carry_out[i], body.carry_in[i]
        if o.op != "add" or not is_float(o.dtype) or any(x is c for x in body.graph.outputs):
            return None
        a, b = o.inputs
        g = b if a is c else a if b is c else None
        if g is None or g is c or tuple(g.shape) != tuple(o.shape) or g.dtype != o.dtype:
            return None
        if [u for u in self.users.get(id(c), ()) if u is not o]:
            return None
        # the running total itself must be read by nothing but the next step: a ys or
        # another body value computed from it needs it per step, inside the loop
        if self.users.get(id(o)) or any(y is o for y in body.ys_out) \
                or any(x is o for j, x in enumerate(body.carry_out) if j != i):
            return None
        return g

    def _leaf(self, n):
        """'x' (varies per step and exists outside), 'b' (a loop value to stack), 'c'
        (the same every step), or None (must be computed)."""
        body = self.body
        if any(n is p for p in body.xs_in):
            return "x"
        if any(n is p for p in body.closure_in) or n.op == "constant":
            return "c"
        if id(n) in self.cone:
            return "b"
        return None

    def _sinkable(self, n) -> bool:
        if id(n) in self.kind:
            return self.kind[id(n)] is not None
        leaf = self._leaf(n)
        if leaf is not None:
            self.kind[id(n)] = "x" if leaf == "b" else leaf
            if leaf == "b" and not any(n is b for b in self.bounds):
                self.bounds.append(n)
            return True
        ok = (_batchable(n) or n.op == "transpose") and all([self._sinkable(i) for i in n.inputs])
        if ok and n.op == "transpose" and self.kind[id(n.inputs[0])] != "c":
            ok = False               # only a transpose that is the same every step (Wᵀ) moves as it is
        self.kind[id(n)] = ("x" if any(self.kind[id(i)] == "x" for i in n.inputs) else "c") if ok else None
        return ok

    def _form(self, g):
        """How an accumulated g sums over steps: ("sum", d, axes), ("matmul", a, d),
        ("each", g) (elementwise), or None."""
        if g.op == "reshape" and g.inputs[0].op == "sum":
            g = g.inputs[0]
        if g.op == "sum":
            return ("sum", g.inputs[0], tuple(g.attrs["axes"]))
        if g.op == "matmul" and g.ndim == 2 and g.inputs[0].op == "transpose" \
                and tuple(g.inputs[0].attrs["perm"]) == (1, 0) and g.inputs[1].ndim == 2:
            return ("matmul", g.inputs[0].inputs[0], g.inputs[1])
        if OPS[g.op].kind == "elementwise" and g.inputs:
            return ("each", g)
        return None

    def _plan(self):
        """(accumulators that move {i: form}, ys that move [j]); sets cone, kind, bounds."""
        body = self.body
        moving = {i: f for i in range(self.k) if (g := self._accumulated(i)) is not None
                  and (f := self._form(g)) is not None}
        while True:
            self.cone = {id(x) for x in toposort([body.carry_out[i] for i in range(self.k) if i not in moving])}
            self.kind, self.bounds = {}, []
            bad = [i for i, f in moving.items() if not all(self._sinkable(v) for v in f[1:] if hasattr(v, "op"))
                   or not any(self.kind.get(id(v)) == "x" for v in f[1:] if hasattr(v, "op"))]
            if not bad:
                break
            for i in bad:
                del moving[i]
        ys = [j for j, y in enumerate(body.ys_out) if id(y) not in self.cone and self._leaf(y) is None
              and self._has_product(y) and self._sinkable(y) and self.kind[id(y)] == "x"]
        return moving, ys

    def _has_product(self, y) -> bool:
        """Does y's own work (outside what the carries need) hold a matmul? Purely
        elementwise ys stay in the step's fused kernel (moving them would store their
        inputs per step instead, for no fewer launches)."""
        return any(m.op == "matmul" and id(m) not in self.cone for m in toposort([y]))

    # ------------------------------------------------------------------ rewrite
    def run(self, counts):
        """The replacement of each of the scan's results (a list by result index), or None."""
        moving, ys_moved = self._plan()
        if not moving and not ys_moved:
            return None
        body, scan, k, nx = self.body, self.scan, self.k, self.nx
        kept_c = [i for i in range(k) if i not in moving]
        kept_y = [j for j in range(body.n_ys) if j not in ys_moved]
        stacked = [body.ys_out[j] for j in kept_y] + list(self.bounds)
        uniq = []                                   # a value stacked twice is stored once
        for y in stacked:
            if not any(y is u for u in uniq):
                uniq.append(y)
        at = [next(q for q, u in enumerate(uniq) if u is y) for y in stacked]
        outputs = [body.carry_out[i] for i in kept_c] + uniq
        used = {id(n) for n in toposort(outputs)}
        keep_x = [j for j in range(nx) if id(body.xs_in[j]) in used]   # xs only moved work read go
        inputs = ([body.carry_in[i] for i in kept_c] + [body.xs_in[j] for j in keep_x]
                  + body.graph.inputs[k + nx:])
        from nngraph.scan_body import Body
        new_body = Body(Graph(inputs, outputs, [], body.graph.name), len(kept_c), len(keep_x))
        ins = (tuple(scan.inputs[i] for i in kept_c) + tuple(scan.inputs[k + j] for j in keep_x)
               + scan.inputs[k + nx:])
        new = make("scan", ins, name=scan.name, where=scan.where, canonical=False, **{**scan.attrs, "body": new_body})
        res = [make("scan_output", (new,), where=scan.where, index=q) for q in range(len(new.type.parts))]
        stacks = [res[len(kept_c) + q] for q in at]            # per entry of `stacked`
        outer = {id(p): v for p, v in zip(body.graph.inputs, scan.inputs)}
        outer.update({id(b): stacks[len(kept_y) + q] for q, b in enumerate(self.bounds)})
        memo: dict = {}

        def out(n):
            return batch_out_of_loop(n, self.kind, outer, memo, counts, "sink")

        repl = [None] * len(scan.type.parts)
        for q, i in enumerate(kept_c):
            repl[i] = res[q]
        for q, j in enumerate(kept_y):
            repl[k + j] = stacks[q]
        for j in ys_moved:
            repl[k + j] = out(body.ys_out[j])
            counts.fired("sink:ys")
        for i, form in moving.items():
            total = _summed(form, out, body.carry_out[i])
            repl[i] = make("add", (scan.inputs[i], total), where=body.carry_out[i].where)
            counts.fired("sink:accumulator")
        return repl


def _summed(form, out, like):
    """The sum over all steps of an accumulated value, from batched (time-first) values."""
    where = like.where
    if form[0] == "sum":
        d, axes = out(form[1]), form[2]
        total = make("sum", (d,), where=where, axes=(0,) + tuple(a + 1 for a in axes), keepdims=False)
    elif form[0] == "matmul":
        a, d = out(form[1]), out(form[2])
        at = make("transpose", (a,), where=where, perm=(0, 2, 1))
        total = make("sum", (make("matmul", (at, d), where=where),), where=where, axes=(0,), keepdims=False)
    else:
        total = make("sum", (out(form[1]),), where=where, axes=(0,), keepdims=False)
    if tuple(total.shape) != tuple(like.shape):
        total = make("reshape", (total,), where=where, shape=tuple(like.shape))
    return total
