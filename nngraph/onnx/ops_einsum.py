"""ONNX Einsum as a broadcast product and a sum: every operand is transposed to one
common order of its indices and given unit axes for the indices it lacks, the
operands are multiplied (the fusion pass folds the product into the sum, so it is
not materialised), the indices absent from the output are summed, and the result
is transposed to the output's order. "..." is supported (broadcast as NumPy does);
an index repeated within one operand (a diagonal) is refused by name."""
from __future__ import annotations

from ..ops import elementwise as ew
from ..ops import movement as mv
from ..ops import reduce as rd
from .registry import converter


def _labels(ctx, term: str, rank: int, ellipsis_rank: int) -> list:
    """An operand's (or the output's) indices, the ellipsis' axes as ("...", k) labels."""
    if "..." in term:
        head, tail = term.split("...")
        n = rank - len(head) - len(tail) if rank is not None else ellipsis_rank
        return list(head) + [("...", ellipsis_rank - n + k) for k in range(n)] + list(tail)
    if rank is not None and len(term) != rank:
        raise ctx.error(f"term {term!r} has {len(term)} indices for an operand of rank {rank}")
    return list(term)


def _parse(ctx, ranks):
    eq = str(ctx.attr("equation")).replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ctx.error(f"equation {eq!r} has {len(terms)} operands, the node {len(ranks)}")
    ell = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t), default=0)
    ins = [_labels(ctx, t, r, ell) for t, r in zip(terms, ranks)]
    if arrow:
        out = _labels(ctx, rhs, None, ell)
    else:
        letters = [c for t in terms for c in t.replace("...", "")]
        out = [("...", k) for k in range(ell)] + sorted(c for c in set(letters) if letters.count(c) == 1)
    return ins, out


def _diagonal(ctx, x, labels: list):
    """x with every index its term repeats taken once: the diagonal over the two axes
    ('ii' -> i), as sum over the second axis of where(i == j, x, 0) (a select, so an inf
    or NaN off the diagonal does not leak in as 0 * inf would)."""
    labels = list(labels)
    while len(set(labels)) != len(labels):
        a = next(k for k, lab in enumerate(labels) if labels.count(lab) > 1)
        b = labels.index(labels[a], a + 1)
        if x.shape[a] != x.shape[b]:
            raise ctx.error(f"index {labels[a]!r} names axes {a} and {b} of {x.type}, whose sizes differ")
        same = ew.equal(ew.iota(tuple(x.shape), a, "int32"), ew.iota(tuple(x.shape), b, "int32"))
        x = rd.sum(ew.where(same, x, ew.zeros_like(x)), b)
        del labels[b]
    return x, labels


@converter("Einsum", 12, attrs=("equation",))
def _einsum(ctx):
    xs = [ctx.t(i) for i in range(len(ctx.node.input))]
    ins, out = _parse(ctx, [x.ndim for x in xs])
    xs, ins = zip(*(_diagonal(ctx, x, labels) for x, labels in zip(xs, ins)))
    order = []
    for labels in ins:
        order += [lab for lab in labels if lab not in order]
    missing = [lab for lab in out if lab not in order]
    if missing:
        raise ctx.error(f"output indices {missing} appear in no operand")
    product = None
    for x, labels in zip(xs, ins):
        mine = sorted(labels, key=order.index)
        if mine != labels:
            x = mv.transpose(x, tuple(labels.index(lab) for lab in mine))
        shape = tuple(x.shape[mine.index(lab)] if lab in mine else 1 for lab in order)
        x = mv.reshape(x, shape) if len(shape) != x.ndim else x
        product = x if product is None else ew.mul(product, x)
    summed = tuple(i for i, lab in enumerate(order) if lab not in out)
    kept = [lab for lab in order if lab in out]
    y = rd.sum(product, summed) if summed else product
    perm = tuple(kept.index(lab) for lab in out)
    return mv.transpose(y, perm) if perm != tuple(range(len(perm))) else y
