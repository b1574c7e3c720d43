"""Unifying dynamic sizes, as TensorFlow 1 and Theano users expect of `None`.

Every `None` in a placeholder's shape is a fresh anonymous size (`_0`, `_1`, ...).
When an op needs two sizes to be equal (an elementwise op, a matmul's inner sizes,
a loss between predictions and targets) and they are two different symbols of
which at least one is anonymous, `join` takes them to be the same size: the node
is built with one of them (a named size wins over an anonymous one, an older
anonymous one over a younger) and `make` records the pair on the node
(`Tensor.joins`). Two different named sizes are never joined (the user said they
may differ), nor is a symbol joined with a number: only a literal 1 broadcasts.

nngraph/size_unify.py then rewrites a whole graph with one symbol per class of
joined sizes.
"""
from __future__ import annotations

import re
import threading

from .types import Dim

_ANON = re.compile(r"_\d+")
_state = threading.local()


def is_anonymous(d: Dim) -> bool:
    return bool(_ANON.fullmatch(d.name))


def class_rank(d: Dim) -> tuple:
    """Which of two joined sizes names the class: named first, then the oldest anonymous."""
    return (1, int(d.name[1:]), "") if is_anonymous(d) else (0, 0, d.name)


def can_join(a, b) -> bool:
    return a == b or (isinstance(a, Dim) and isinstance(b, Dim) and (is_anonymous(a) or is_anonymous(b)))


def same_shape(a, b) -> bool:
    """Two shapes an op needs equal: same rank, each axis equal or joinable (the op that
    then combines them records the join)."""
    return len(a) == len(b) and all(can_join(s, t) for s, t in zip(a, b))


def join(a, b):
    """The one size that a and b are when an op needs them equal, or None when they
    cannot be (two numbers, a number and a symbol, two named symbols that differ).
    A join of two symbols is recorded on the node being built."""
    if a == b:
        return a
    if not can_join(a, b):
        return None
    keep, drop = sorted((a, b), key=class_rank)
    stack = getattr(_state, "stack", None)
    if stack:
        labels = getattr(_state, "labels", None)
        stack[-1].append((keep, drop, labels[0] if labels else None))
    return keep


class joined_by:
    """Within it, joins are reported as made by the user-level function `name` (e.g.
    cross_entropy) rather than by the primitive inside it that joined them."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        if not hasattr(_state, "labels"):
            _state.labels = []
        _state.labels.append(self.name)

    def __exit__(self, *exc):
        _state.labels.pop()
        return False


class collecting:
    """Context of `make`: the joins made while one node's type is inferred."""

    def __enter__(self):
        if not hasattr(_state, "stack"):
            _state.stack = []
        self.joins = []
        _state.stack.append(self.joins)
        return self.joins

    def __exit__(self, *exc):
        _state.stack.pop()
        return False


def reports_joins(fn):
    """Decorator: joins made inside `fn` are reported under its name (see joined_by)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with joined_by(fn.__name__):
            return fn(*args, **kwargs)
    return wrapper
