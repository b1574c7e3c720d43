"""Byte counts of buffers, computed with Python ints (never wrapping), and the one
limit on them: a buffer that no address space can hold is a MemoryError before any
native code runs (a wrapped int64 count once sized a work buffer too small and the
kernels wrote past it)."""
from __future__ import annotations

import math

# the largest byte count NumPy can allocate (its sizes are signed 64-bit)
MAX_BYTES = 2**63 - 1


def element_count(shape) -> int:
    return math.prod(int(s) for s in shape)


def checked_nbytes(shape, itemsize: int, what: str) -> int:
    """Bytes of a `shape` buffer of `itemsize`-byte elements; MemoryError if impossible."""
    n = element_count(shape) * int(itemsize)
    if n > MAX_BYTES:
        raise MemoryError(f"{what}: shape {list(shape)} needs {n} bytes, more than any address space "
                          f"holds (at most {MAX_BYTES}); use smaller sizes")
    return n


def check_total(nbytes: int, what: str) -> int:
    """A sum of buffer sizes must itself be allocatable."""
    if nbytes > MAX_BYTES:
        raise MemoryError(f"{what}: needs {nbytes} bytes in all, more than any address space holds")
    return nbytes
