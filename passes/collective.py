"""The collective kernel of a Program: one all-reduce of a packed buffer.

    AllReduceKernel(send, recv, ranks, members, send_parts, recv_parts, in_place)
        recv[i] = sum over the job's processes of send[i], for every element of the
        contiguous buffer `send` (row-major, any shape); with ranks == 1 a copy.

passes/lower/collective.py makes it: each member (an all_reduce node of one
phase, same dtype, static shapes) owns a *part* of `send` (`send_parts`, views
with offsets) into which the kernel computing its operand writes directly
(`in_place`; else a pack kernel fills it), and a part of `recv` (`recv_parts`)
that its consumers read in place. The kernel reads the send parts and writes recv
and its parts, so the schedule orders it after every part's writer and before
every reader. `members` records which graph value occupies which range, for
dumps and `fn.stats()["all_reduce"]`. The sum is over ranks only: a mean is
scaled by its consumers (the `all_reduce_means` pass) or by an unpack kernel, so
the call is the same for both ops.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AllReduceKernel:
    name: str
    send: int
    recv: int
    ranks: int                     # processes of the job the program was compiled in
    members: tuple = ()            # ((label, offset, elements), ...) in buffer order
    source: str = ""
    send_parts: tuple = ()         # per member: its part of send (a view with an offset)
    recv_parts: tuple = ()         # per member: its part of recv
    in_place: tuple = ()           # per member: True when its operand's own kernel wrote the part

    def reads(self) -> set:
        return set(self.send_parts) or {self.send}

    def writes(self) -> set:
        return {self.recv, *self.recv_parts}

    def describe(self, bufname) -> list:
        """Lines for fn.dump("kernels")."""
        head = (f"all_reduce sum {bufname(self.recv)} <- {bufname(self.send)} over {self.ranks} "
                f"process{'es' if self.ranks != 1 else ''} (one MPI_Allreduce)")
        how = self.in_place or (False,) * len(self.members)
        return [head] + [f"  [{off}:{off + n if isinstance(n, int) else n}] {label}"
                         f"{'  (written in place)' if done else '  (by the pack kernel)'}"
                         for (label, off, n), done in zip(self.members, how)]


def collective_stats(schedule, buffers) -> dict:
    """fn.stats()["all_reduce"]: calls per step and, per call, the packed buffer and
    the values it holds (label, offset, elements, whether its own kernel wrote it
    there: `in_place`)."""
    calls = [k for k in schedule if isinstance(k, AllReduceKernel)]
    return {"calls": len(calls),
            "buffers": [{"buffer": buffers[k.send].name, "elements": _total(k.members),
                         "dtype": buffers[k.send].dtype, "ranks": k.ranks,
                         "values": [{"value": label, "offset": off, "elements": n, "in_place": bool(done)}
                                    for (label, off, n), done in
                                    zip(k.members, k.in_place or (False,) * len(k.members))]}
                        for k in calls]}


def _total(members):
    """Elements of a packed buffer: an int, or a symbolic bucket's shape as text."""
    counts = [n for _, _, n in members]
    return sum(counts) if all(isinstance(n, int) for n in counts) else " + ".join(map(str, counts))
