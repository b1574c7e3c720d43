"""Index arithmetic in 32 or 64 bits, chosen per launch.

Offsets computed from tl.program_id and tl.arange are int32, which is fast but wraps
once an offset passes 2**31. So every generated kernel takes a constexpr INDEX64 and,
when it is set, first widens its program ids and its size arguments to int64: then
every offset, mask and index decomposed from them is int64 too. The launcher sets it
from the element counts of the kernel's buffers and loop domain for the sizes of that
launch (`_index64` in the module header): int64 from INDEX64_FROM = 2**30 elements,
half the int32 range, so that the lanes of a last block running past a tensor's end
(and a split reduction's last chunk) cannot wrap either. Triton compiles each variant
once; small tensors keep the int32 kernels.
"""
from __future__ import annotations

from .names import symbol_name

HELPER = '''\
INDEX64_FROM = 2 ** 30   # a kernel touching this many elements or more indexes in int64


def _index64(*counts):
    """1 (int64 index arithmetic) when a buffer or loop domain reaches INDEX64_FROM elements, else 0."""
    return int(max(counts) >= INDEX64_FROM)
'''


def prologue(programs, symbols, extra=()) -> list:
    """Kernel lines: each (name, program id expression) bound, then, under INDEX64, the
    program ids, the size arguments and the `extra` int arguments widened to int64."""
    out = [f"    {name} = {expr}" for name, expr in programs]
    widen = [name for name, _ in programs] + [symbol_name(s) for s in symbols] + list(extra)
    out.append("    if INDEX64:   # a tensor of 2**30 elements or more: offsets in int64")
    out += [f"        {n} = {n}.to(tl.int64)" for n in widen]
    return out


def launcher_line(counts) -> str:
    """The launcher line that sets INDEX64 from element counts (source expressions)."""
    return f"    INDEX64 = _index64({', '.join(dict.fromkeys(counts))})"
