"""The names of the generated module's globals that the runtime looks up after
loading its object code: the entry point and the per-kernel profile counters. Kept
apart from entry.py (which makes them) so that loading stored object code imports
no IR builder."""
from __future__ import annotations

ENTRY = "nngraph_entry"      # int32 (void **buffers, int64 *sizes): 0, or 1 + the failing kernel
PROFILE = "nngraph_prof"     # int64[kernels]: accumulated ns per kernel (NNGRAPH_PROFILE=1 builds)
