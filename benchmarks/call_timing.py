"""Timing one call repeatedly inside a benchmark's child process: wall time per call
(each call on its own, so a median drops the calls another process interrupted) and
the process's CPU time per call (a spinning worker thread shows there, not in wall)."""
from __future__ import annotations

import time


def time_calls(call, runs: int) -> tuple:
    """(wall seconds of each of `runs` calls, CPU seconds per call over them)."""
    walls, cpu0 = [], time.process_time()
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        walls.append(time.perf_counter() - t0)
    return walls, (time.process_time() - cpu0) / runs
