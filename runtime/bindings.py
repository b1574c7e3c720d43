"""The per-size bindings a runner keeps (work buffers, pointer arrays): the most
recently used few, not one per batch size ever seen. A training loop with a
ragged last batch uses two; an inference server fed every batch size from 1 to
400 used to keep 400 work buffers (+271 MB) for good."""
from __future__ import annotations

from collections import OrderedDict

MAX_BINDINGS = 8


class BindingCache:
    """key -> binding, least recently used dropped beyond `limit` entries."""

    def __init__(self, make, limit: int = MAX_BINDINGS):
        self._make = make
        self._limit = limit
        self._items = OrderedDict()

    def get(self, key, env):
        bd = self._items.get(key)
        if bd is None:
            bd = self._items[key] = self._make(env)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return bd

    def __len__(self) -> int:
        return len(self._items)

    def values(self):
        """The bindings kept, least recently used first."""
        return self._items.values()
