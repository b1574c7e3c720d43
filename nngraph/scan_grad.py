"""The gradient of a scan: a scan that runs the other way over stored residuals.

For a forward loop `c[t+1], y[t] = step(c[t], x[t], k)` (k: the closed-over values),
the vjp of the step, `(gc[t], gx[t], gk[t]) = vjp_step(gc[t+1], gy[t])`, is itself a
graph, built once per body by nngraph/autodiff.vjp on placeholders for the
cotangents (the *plan*, cached on the Body). Its nodes fall in three sets:

- cotangent side: they depend on the cotangents; they run in the backward loop;
- forward side: they depend on c[t] or x[t] but not on a cotangent. The ones the
  cotangent side reads (e.g. `1 - tanh(z)^2`, a gate's activation, c[t] itself) are
  the *residuals*: the forward scan stores them per step as extra ys (a twin of the
  forward scan with those ys appended; passes/scans.py merges the two, so the loop
  runs once). Nothing else of the forward step is kept. x[t] is read again from xs;
- loop-invariant: they depend only on k and constants (W.T for the product with the
  recurrent weights). They are built outside the backward loop and closed over:
  computed once, not per step.

The backward scan (reverse of the forward's direction) has as carries the carry
cotangents gc (one per float carry) and one accumulator per closed-over float value
that needs a gradient (gk_sum += gk[t]: memory of one weight, not T of them); as xs
the given cotangents of the ys, the residual stacks and the xs the cotangent side
reads; as ys the cotangents of the xs. Its results are the gradients of the init
(final gc), of the xs (its ys) and of the closed-over values (final accumulators).
Being a scan node, it has a gradient of its own (gradients of gradients).

An old carry read by the backward only in a weight's product `gk += c[t]ᵀ·d[t]` (an
LSTM's h[t-1] in dW_hh) is not stored when the step's new carry is pointwise in the
other residuals (h[t] = o[t]·tanh(c[t])): the backward step returns its new carry
and d as ys, a loop shifts the first stack by one step (init first), and the sum is
one product after the loop (GradPlan._shifted_carries, _shifted_product).
"""
from __future__ import annotations

from .autodiff import vjp
from .graph import toposort
from .node import OPS, Tensor, make
from .ops import elementwise as ew
from .scan_body import results
from .scan_build import trace_node
from .source_location import located_at
from .types import TensorType, is_float


class GradPlan:
    """The step's vjp graph and what the forward must store for it (module docstring)."""

    def __init__(self, body, given_ys: tuple):
        self.body = body
        self.fc = [i for i, c in enumerate(body.carry_out) if is_float(c.dtype)]
        self.fy = [j for j, ok in enumerate(given_ys) if ok]
        self.gc_ph = [_ph(body.carry_out[i].type, f"g_carry{i}") for i in self.fc]
        self.gy_ph = [_ph(body.ys_out[j].type, f"g_y{j}") for j in self.fy]
        self.wrt = [p for p in body.graph.inputs if is_float(p.dtype)]
        outs = [body.carry_out[i] for i in self.fc] + [body.ys_out[j] for j in self.fy]
        grads = vjp(outs, self.gc_ph + self.gy_ph, self.wrt)
        self.grads = {id(w): g for w, g in zip(self.wrt, grads)}
        self.residuals = self._residuals([g for g in grads if g is not None])
        self.shifted = self._shifted_carries()
        dropped = {id(body.carry_in[i]) for i in self.shifted}
        self.residuals = [r for r in self.residuals if id(r) not in dropped]
        self.stored, self.pieces = _joined_pieces(self.residuals)
        self.forward = body.with_outputs(list(body.graph.outputs) + self.stored)

    def _residuals(self, grads: list) -> list:
        cot = {id(p) for p in self.gc_ph + self.gy_ph}
        variant = {id(p) for p in self.body.carry_in + self.body.xs_in}
        xs = {id(p) for p in self.body.xs_in}
        order = toposort(grads)
        for n in order:
            if n.inputs and any(id(i) in cot for i in n.inputs):
                cot.add(id(n))
            elif n.inputs and any(id(i) in variant for i in n.inputs):
                variant.add(id(n))
        used = [i for n in order if id(n) in cot for i in n.inputs] + grads
        self.xs_read = {id(i) for i in used if id(i) in xs}
        out, seen = [], set()
        for i in used:
            if id(i) in variant and id(i) not in cot and id(i) not in xs and id(i) not in seen:
                seen.add(id(i))
                out.append(i)
        return self._recompute_cheap(out, variant)

    def _shifted_carries(self) -> dict:
        """{carry index i: closure index j} for the stored old carries c[t] that the
        backward reads only in the product `gk_j += c[t]ᵀ · d[t]` (an LSTM's h[t-1] in
        the gradient of its recurrent weights) while the step's new carry c[t+1] is an
        elementwise function of the other residuals (h[t] = o[t]·tanh(c[t]) of the stored
        gates and cell): c is not stored; the backward step t recomputes its new carry
        and returns it with d as ys, and the sum of products runs after the loop over
        those stacks shifted by one step (_shifted_product)."""
        body, stops = self.body, {id(r) for r in self.residuals}
        readers = _backward_readers(list(self.grads.values()), stops)
        out = {}
        for j, w in enumerate(body.closure_in):
            g = self.grads.get(id(w))
            if g is None or g.op != "matmul" or g.ndim != 2 or g.inputs[0].op != "transpose" \
                    or tuple(g.inputs[0].attrs["perm"]) != (1, 0):
                continue
            t = g.inputs[0]
            r = t.inputs[0]
            i = next((m for m, c in enumerate(body.carry_in) if c is r), None)
            if i is None or i in out or id(r) not in stops or not is_float(r.dtype) \
                    or not _read_only_by(readers, r, t) or not _read_only_by(readers, t, g) \
                    or any(v is r for v in self.grads.values()):
                continue
            if _elementwise_of(body.carry_out[i], stops - {id(r)}, body):
                out[i] = j
        return out

    def _recompute_cheap(self, stored: list, variant: set) -> list:
        """Drop the residuals that cheap ops (movement, elementwise of cost 1: `1 - h*h`,
        a transpose; at most RECOMPUTE_BUDGET of costlier elementwise work: tanh(c[t]))
        compute from other residuals, xs or the step's carry: the backward recomputes
        them instead of storing them. The carry they read is stored instead."""
        free = {id(p) for p in self.body.xs_in}
        keep = {id(r): r for r in stored}
        for r in list(stored):
            others = set(keep) - {id(r)}
            leaves = next((ls for ls in (_cheap_leaves(r, variant, b) for b in (0, RECOMPUTE_BUDGET))
                           if ls is not None and all(id(v) in others or id(v) in free or v.op == "placeholder"
                                                     for v in ls)), None)
            if leaves is not None:
                del keep[id(r)]
                for v in leaves:
                    if id(v) in free:
                        self.xs_read.add(id(v))
                    else:
                        keep.setdefault(id(v), v)
        return list(keep.values())


# The most a residual may cost to compute again per element in the backward step instead
# of being stored: one transcendental (tanh(c[t]) of an LSTM from f*c[t-1] + i*g, as
# PyTorch's LSTM does). Storing it costs a [T, ...] stack: a write in the forward and a
# read in the backward of every element, and the stack's memory over both loops.
RECOMPUTE_BUDGET = OPS["tanh"].cost


def _cheap_leaves(r: Tensor, variant: set, budget: int = 0) -> list | None:
    """The per-step values r is a cheap function of (r itself excluded), or None when
    computing r needs a product or a reduction on per-step values. Ops of cost 1
    (arithmetic, movement) are always recomputed; costlier elementwise ops while their
    costs add up to at most `budget`, else they are leaves (stored)."""
    leaves, stack, seen = [], [r], set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n is not r and (n.op == "placeholder" or id(n) not in variant):
            if id(n) in variant:
                leaves.append(n)
            continue
        op = OPS[n.op]
        spend = op.cost if op.cost > 1 else 0
        if op.kind not in ("elementwise", "movement") or spend > budget:
            if n is r:
                return None
            leaves.append(n)
            continue
        budget -= spend
        stack.extend(n.inputs)
    return leaves


def _backward_readers(grads: list, stops: set) -> dict:
    """id(node) -> the nodes that read it among those the backward step computes: the
    vjp graph below `grads`, down to the stored residuals (`stops`), which it reads."""
    readers, seen, stack = {}, set(), [g for g in grads if g is not None]
    while stack:
        n = stack.pop()
        if id(n) in seen or id(n) in stops:
            continue
        seen.add(id(n))
        for i in n.inputs:
            readers.setdefault(id(i), [])
            if not any(u is n for u in readers[id(i)]):
                readers[id(i)].append(n)
            stack.append(i)
    return readers


def _read_only_by(readers: dict, value: Tensor, reader: Tensor) -> bool:
    """Does the backward step read `value` in `reader` alone (so d cannot depend on it)?"""
    mine = readers.get(id(value), [])
    return len(mine) == 1 and mine[0] is reader


def _elementwise_of(value: Tensor, leaves: set, body) -> bool:
    """Is `value` computed by elementwise and movement ops from the nodes in `leaves`,
    closed-over values and constants alone (no product, no other per-step value)?"""
    closure = {id(p) for p in body.closure_in}
    seen, stack = set(), [value]
    while stack:
        n = stack.pop()
        if id(n) in seen or id(n) in leaves or id(n) in closure or n.op == "constant":
            continue
        seen.add(id(n))
        if n.op == "placeholder" or OPS[n.op].kind not in ("elementwise", "movement") or not n.inputs:
            return False
        stack.extend(n.inputs)
    return True


def _piece_of(r: Tensor):
    """(z, start, stop) when r is an elementwise function of one operand of z[..., start:stop]
    (a gate's activation of its block of the step's product), else None."""
    if OPS[r.op].kind != "elementwise" or len(r.inputs) != 1 or r.inputs[0].op != "slice":
        return None
    sl = r.inputs[0]
    z = sl.inputs[0]
    *lead, (start, stop, step) = sl.attrs["slices"]
    if step != 1 or any(tuple(x) != (0, s, 1) for x, s in zip(lead, z.shape)) or r.dtype != z.dtype:
        return None
    return z, start, stop


def _joined_pieces(residuals: list) -> tuple:
    """(the values the forward stores, {id(residual): (stored index, start, stop)}).
    Residuals that are functions of side-by-side blocks covering the last axis of one
    value z (an LSTM's i, f, g, o of z = x W + h U + b) are stored as their one
    concatenation, z's shape: one stack the backward reads in one pass, which the
    memory plan can lay over the stack of z's input projection and the backward's
    gate gradient over it (passes/memory_inplace.py)."""
    by_z: dict = {}
    for r in residuals:
        p = _piece_of(r)
        if p is not None:
            by_z.setdefault(id(p[0]), (p[0], []))[1].append((p[1], p[2], r))
    joined = {}
    for z, pieces in by_z.values():
        pieces.sort(key=lambda p: p[0])
        ends = [0] + [p[1] for p in pieces]
        if len(pieces) > 1 and [p[0] for p in pieces] == ends[:-1] and ends[-1] == z.shape[-1]:
            joined[id(z)] = (make("concatenate", [p[2] for p in pieces], where=z.where, axis=z.ndim - 1), pieces)
    stored, where, pieces_of = [], {}, {}
    for r in residuals:
        p = _piece_of(r)
        if p is not None and id(p[0]) in joined:
            cat, pieces = joined[id(p[0])]
            if id(cat) not in where:
                where[id(cat)] = len(stored)
                stored.append(cat)
            pieces_of[id(r)] = (where[id(cat)], p[1], p[2])
        else:
            stored.append(r)
    return stored, pieces_of


def _ph(t: TensorType, name: str) -> Tensor:
    return make("placeholder", (), name=name, where="<scan gradient>", shape=t.shape, dtype=t.dtype)


def plan_for(body, given_ys: tuple) -> GradPlan:
    """The cached GradPlan of `body` when the ys marked in `given_ys` have cotangents."""
    key = ("grad", given_ys)
    if key not in body.cache:
        body.cache[key] = GradPlan(body, given_ys)
    return body.cache[key]


def scan_vjp(n: Tensor, g: dict, needs: tuple) -> tuple:
    """Cotangents of a scan's inputs (init, xs, closed-over) from {result index: cotangent}."""
    body = n.attrs["body"]
    k, nx = body.n_carry, body.n_xs
    given = tuple(is_float(y.dtype) and (k + j) in g for j, y in enumerate(body.ys_out))
    plan = plan_for(body, given)
    with located_at(n.where):
        return _backward(n, g, needs, plan, k, nx)


def _backward(n, g, needs, plan: GradPlan, k: int, nx: int) -> tuple:
    body, attrs = plan.body, n.attrs
    fwd = results(make("scan", n.inputs, where=n.where, canonical=False, body=plan.forward,
                       length=attrs["length"], reverse=attrs["reverse"]))
    stored = fwd[k + body.n_ys:]
    closure = list(n.inputs[k + nx:])
    shifted = {i: j for i, j in plan.shifted.items() if needs[k + nx + j]}
    acc = [j for j, p in enumerate(body.closure_in) if needs[k + nx + j] and id(p) in plan.grads
           and j not in shifted.values()]
    xs_needed = [j for j, p in enumerate(body.xs_in) if needs[k + j]]
    init = [_given(g.get(i), n.type.parts[i]) for i in plan.fc] + [ew.zeros_like(closure[j]) for j in acc]
    xs_used = [j for j, p in enumerate(body.xs_in) if id(p) in plan.xs_read]
    outer_xs = [g[k + j] for j in plan.fy] + stored + [n.inputs[k + j] for j in xs_used]
    carry_ph = [_ph(t.type, t.name or "g") for t in plan.gc_ph] + [_ph(closure[j].type, f"g_k{j}") for j in acc]
    x_ph = ([_ph(p.type, p.name) for p in plan.gy_ph] + [_ph(r.type, f"r{i}") for i, r in enumerate(plan.stored)]
            + [_ph(body.xs_in[j].type, f"x{j}") for j in xs_used])
    mapping = dict(zip(map(id, plan.gc_ph + plan.gy_ph), carry_ph[:len(plan.fc)] + x_ph))
    mapping.update(_residual_values(plan, x_ph[len(plan.fy):len(plan.fy) + len(plan.stored)]))
    mapping.update({id(body.xs_in[j]): x_ph[len(plan.fy) + len(plan.stored) + m] for m, j in enumerate(xs_used)})
    mapping.update({id(p): c for p, c in zip(body.closure_in, closure)})
    clone = _Cloner(mapping)
    new_gc = [clone.grad(plan, body.carry_in[i]) for i in plan.fc]
    new_acc = [ew.add(a, clone(plan.grads[id(body.closure_in[j])]))
               for a, j in zip(carry_ph[len(plan.fc):], acc)]
    gxs = [clone.grad(plan, body.xs_in[j]) for j in xs_needed]
    ys = list(gxs)
    pairs = [(_ys_index(ys, clone(body.carry_out[i])),
              _ys_index(ys, clone(plan.grads[id(body.closure_in[j])].inputs[1]))) for i, j in shifted.items()]
    bwd = results(trace_node(carry_ph, x_ph, new_gc + new_acc, ys, init, outer_xs, attrs["length"],
                             not attrs["reverse"], n.where))
    out = [None] * len(n.inputs)
    for m, i in enumerate(plan.fc):
        out[i] = bwd[m] if needs[i] else None
    for m, j in enumerate(acc):
        out[k + nx + j] = bwd[len(plan.fc) + m]
    first_y = len(plan.fc) + len(acc)
    for m, j in enumerate(xs_needed):
        out[k + j] = bwd[first_y + m]
    for (i, j), (at_new, at_d) in zip(shifted.items(), pairs):
        out[k + nx + j] = _shifted_product(n.inputs[i], bwd[first_y + at_new], bwd[first_y + at_d], attrs, closure[j])
    return tuple(out)


def _ys_index(ys: list, value: Tensor) -> int:
    """The index of `value` among the backward's ys, appended if it is not one yet (the
    gate gradient d is often the xs' cotangent already: one stack, not two)."""
    at = next((m for m, y in enumerate(ys) if y is value), None)
    if at is None:
        ys.append(value)
        at = len(ys) - 1
    return at


def _shifted_product(init: Tensor, new_carries: Tensor, ds: Tensor, attrs: dict, like: Tensor) -> Tensor:
    """sum_t c[t]ᵀ · d[t] over all steps, where the old carry c[t] of step t is the new
    carry of the step before (init at the first): a loop that shifts the stack of new
    carries by one step (a copy per step, which the memory plan can write over the
    stack it reads), then one product over all steps (T·N rows). Length 0 gives
    empty stacks and zeros; a zero init adds nothing, as it should."""
    ph_c = _ph(init.type, "old_carry")
    ph_x = _ph(init.type, "new_carry")
    olds = results(trace_node([ph_c], [ph_x], [ph_x], [_after_reading(ph_x, ph_c)], [init], [new_carries],
                              attrs["length"], attrs["reverse"], init.where))[1]
    at = make("transpose", (olds,), where=like.where, perm=(0, 2, 1))
    total = make("sum", (make("matmul", (at, ds), where=like.where),), where=like.where, axes=(0,), keepdims=False)
    return total if total.dtype == like.dtype else ew.cast(total, like.dtype)


def _after_reading(x: Tensor, value: Tensor) -> Tensor:
    """`value`, stored only once `x` is loaded: exactly value for every x but NaN (then
    x: the product is NaN, as it is anyway unless only the last new carry is NaN,
    which no old carry is). The shift loop writes its stack over the one it reads, slice t over slice t, and the
    memory plan allows that only when the store depends on the load by data
    (passes/memory_inplace.py: backends may reorder a store and a load they are told
    do not alias, unless the data orders them)."""
    return ew.where(ew.equal(x, x), value, x)


def _residual_values(plan: GradPlan, stored_ph: list) -> dict:
    """id(residual) -> the backward step's value of it: its stored placeholder, or the
    slice of the stored concatenation it is a piece of."""
    out = {}
    for i, r in enumerate(plan.stored):
        out[id(r)] = stored_ph[i]
    for r in plan.residuals:
        if id(r) in plan.pieces:
            i, start, stop = plan.pieces[id(r)]
            ph = stored_ph[i]
            full = tuple((0, s, 1) for s in ph.shape[:-1])
            out[id(r)] = make("slice", (ph,), where=r.where, slices=full + ((start, stop, 1),))
    return out


def _given(g, t: TensorType) -> Tensor:
    """The given cotangent of a final carry, or zeros of its type."""
    if g is None:
        return make("broadcast_to", (ew.constant(0.0, t.dtype),), shape=tuple(t.shape))
    return g if g.dtype == t.dtype else ew.cast(g, t.dtype)


class _Cloner:
    """The plan's vjp nodes rebuilt on the backward step's placeholders and the outer values."""

    def __init__(self, mapping: dict):
        self.mapping = mapping

    def __call__(self, node: Tensor) -> Tensor:
        for n in self._unmapped(node):
            if n.op == "placeholder":
                raise AssertionError(f"scan gradient: the step's vjp reads {n.name}, which it was not given")
            self.mapping[id(n)] = (n if not n.inputs else
                                   make(n.op, [self.mapping[id(i)] for i in n.inputs], name=n.name,
                                        where=n.where, canonical=False, **n.attrs))
        return self.mapping[id(node)]

    def _unmapped(self, root: Tensor) -> list:
        """The nodes below root not yet mapped, inputs first (never past a mapped node)."""
        order, seen, stack = [], set(), [(root, False)]
        while stack:
            n, done = stack.pop()
            if done:
                order.append(n)
            elif id(n) not in self.mapping and id(n) not in seen:
                seen.add(id(n))
                stack.append((n, True))
                stack.extend((i, False) for i in reversed(n.inputs))
        return order

    def grad(self, plan: GradPlan, p: Tensor) -> Tensor:
        g = plan.grads.get(id(p))
        return self(g) if g is not None else ew.zeros_like(p)
