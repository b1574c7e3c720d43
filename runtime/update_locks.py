"""Which locks a call takes so that calls updating the same parameter never overlap
(each would read the values the other replaces: lost updates).

Every parameter that some Function updates belongs to one update group for life: the
first Function made that updates it puts it in the group of another parameter it
updates (one that has a group already), or in a new group. A Function takes the locks
of the distinct groups of the parameters it updates, in the order the groups were made
(one global order: no deadlock). Any two Functions that update a common parameter take
that parameter's group lock, so their calls never overlap; a model's training step,
however many parameters it updates, usually takes one lock (a lock per parameter, or
per stripe of parameters, costs a call some 0.15 us per lock).

The group sits in the parameter's state dict (nngraph/node.py's Parameter._state),
which the parameter keeps for life, under GROUP_KEY.
"""
from __future__ import annotations

import itertools
import threading

GROUP_KEY = "update_group"
_MAKING = threading.Lock()      # groups are looked up and assigned by one thread at a time
_ORDER = itertools.count()


class _Group:
    """An update group: its lock and its place in the global order."""

    __slots__ = ("order", "lock")

    def __init__(self):
        self.order = next(_ORDER)
        self.lock = threading.Lock()


def update_locks(params) -> list:
    """The locks a call updating `params` (Parameters) takes, in the global order;
    assigns a group to each parameter that has none."""
    states = [p._state for p in params]
    if not states:
        return []
    with _MAKING:
        groups = {id(g): g for g in (s.get(GROUP_KEY) for s in states) if g is not None}
        joined = min(groups.values(), key=_order) if groups else _Group()
        groups[id(joined)] = joined
        for s in states:
            s.setdefault(GROUP_KEY, joined)
    return [g.lock for g in sorted(groups.values(), key=_order)]


def _order(group) -> int:
    return group.order
