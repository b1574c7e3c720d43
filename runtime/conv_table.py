"""The convolution layouts chosen on this host: the stored table (`conv-layouts.json`
in nngraph's cache directory, codegen/cache.py) and this process's answers, and
whether a compiled function made with provisional ones may be used (`settled`).

Apart from runtime/conv_choice.py, which times the layouts, because a compile-cache
hit reads it (runtime/compile_cache.py) and must not import what timing needs: the
lowering's passes, about 40 ms of a hit's 50 ms budget.
"""
from __future__ import annotations

CACHE_FILE = "conv-layouts.json"

# (host key, shape key) -> the entry this process answers with (runtime/conv_choice.py:
# measured_layout); runtime/host_choices.py empties it when the choices are forgotten
answers: dict = {}
# (host key, shape key) of the provisional choices `settled` found due to be timed again
# in this process: the compile its refusal causes times them whatever the moment then
# (runtime/conv_choice.py), else a busy moment there would store the same provisional
# choice again and the next process could refuse its entry again, for ever
found_due: set = set()


def read_table() -> dict:
    from codegen.cache import read_json_table
    return read_json_table(CACHE_FILE)


def write_table(table: dict) -> None:
    from codegen.cache import write_json_table
    write_json_table(CACHE_FILE, table)


def stored_entry(table: dict, key: str, shape: str):
    """The table's entry for (key, shape) when it is a dict, else None (absent, or a
    damaged table: measured again and overwritten, never trusted)."""
    shapes = table.get(key)
    entry = shapes.get(shape) if isinstance(shapes, dict) else None
    return entry if isinstance(entry, dict) else None


def with_entry(table: dict, key: str, shape: str, entry: dict) -> dict:
    """`table` with (key, shape) set to `entry` (a damaged host part replaced)."""
    shapes = table.get(key)
    table[key] = {**(shapes if isinstance(shapes, dict) else {}), shape: entry}
    return table


def settled(dependencies) -> bool:
    """Is every [host key, shape, choice] of `dependencies` (provisional answers a
    compiled function was made with) the answer now: this process's (it timed them
    again), or the table's once it is not due to be timed again (final, or the
    machine busy now: codegen/timing_trust.due). Otherwise a compile must time them
    again."""
    from codegen import timing_trust
    if not all(isinstance(d, list) and len(d) == 3 and all(isinstance(x, str) for x in d) for d in dependencies):
        return False
    table = None
    for key, shape, choice in dependencies:
        entry = answers.get((key, shape))
        if entry is None:            # not needed in this process yet: settled if the table's is final
            table = read_table() if table is None else table
            entry = stored_entry(table, key, shape)
            if entry is None or not timing_trust.valid(entry.get("trust")):
                return False
            if timing_trust.due(entry.get("trust")):
                found_due.add((key, shape))
                return False
        if entry.get("choice") != choice:
            return False
    return True
