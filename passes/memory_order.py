"""What the memory plan can prove about byte sizes that hold symbols (T, N, ...).

A buffer's bytes are `coef * T^a * N^b ...` (its signature: the constant part and
the symbols with their exponents). The plan is made once for every binding of the
symbols, so it may only rely on what holds for all of them:

- equal signatures are equal sizes for every binding;
- `at_least(a, b)`: a >= b for every binding of sizes >= 1 when a holds every symbol
  of b at least as often and a constant at least as large ([T, N, 256] >= [N, 256]
  >= [N, 10]; [T, N, 256] against [256, 1024] is unknown: T*N < 4 * 256 or not);
- `slot_at_least(members, sig)`: a slot (whose size is its largest member's, at
  every call) is at least sig when one member is;
- `slot_dominates(s, r)`: slot s is at least slot r when each of r's members is at
  most one of s's.

A size of 0 (an empty batch, a scan of length 0) makes every buffer that holds it
empty: the orders above may then be wrong, but only for a call that stores nothing
in those buffers, so the plan's choices cost at most the bytes of the buffers
without that symbol. The plan never relies on an order for correctness (a slot is
as large as its largest member at every call), only to choose where to put a
buffer so that the arena grows least.
"""
from __future__ import annotations

from nngraph.types import np_dtype, size_product


def signature(buf) -> tuple:
    """(constant bytes, ((symbol, exponent), ...) sorted): buf's bytes as a product."""
    coef, syms = size_product(buf.shape)
    return coef * np_dtype(buf.dtype).itemsize, tuple(sorted(syms.items()))


def at_least(a: tuple, b: tuple) -> bool:
    """Is signature a >= signature b for every binding of sizes >= 1 (module docstring)?"""
    sa = dict(a[1])
    return a[0] >= b[0] and all(sa.get(name, 0) >= e for name, e in b[1])


def slot_at_least(members, sig: tuple) -> bool:
    """Is a slot holding buffers of these signatures at least `sig` bytes at every call?"""
    return any(at_least(m, sig) for m in members)


def slot_dominates(members, others) -> bool:
    """Is a slot of `members` at least as large as a slot of `others` at every call?"""
    return all(slot_at_least(members, o) for o in others)


def size_key(sig: tuple) -> tuple:
    """An order of signatures consistent with `at_least` (a >= b gives key(a) >= key(b)):
    more symbolic factors first, then the constant (a [T, N, 1024] stack before a
    [1024, 256] matrix before an [N, 10] row block)."""
    coef, syms = sig
    return (sum(e for _, e in syms), coef)
