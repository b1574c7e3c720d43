"""The collective kernel of a Program: one all-reduce of a packed buffer.

    AllReduceKernel(send, recv, ranks, members)
        recv[i] = sum over the job's processes of send[i], for every element of the
        contiguous buffer `send` (row-major, any shape); with ranks == 1 a copy.

passes/lower_collective.py makes it: the operands of the independent all_reduce
nodes of one step (same dtype, static shapes) are copied into one `send` buffer by
small pack kernels, reduced by ONE kernel (one MPI_Allreduce), and copied out of
`recv` (scaled by 1/ranks for a mean) by unpack kernels. `members` records which
graph value occupies which range, for dumps and `fn.stats()["all_reduce"]`.
The sum is over ranks only: means are the unpack kernels' business, so the call
is the same for both ops.
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

    def reads(self) -> set:
        return {self.send}

    def writes(self) -> set:
        return {self.recv}

    def describe(self, bufname) -> list:
        """Lines for fn.dump("kernels")."""
        head = (f"all_reduce sum {bufname(self.recv)} <- {bufname(self.send)} over {self.ranks} "
                f"process{'es' if self.ranks != 1 else ''} (one MPI_Allreduce)")
        return [head] + [f"  [{off}:{off + n if isinstance(n, int) else n}] {label}"
                         for label, off, n in self.members]


def collective_stats(schedule, buffers) -> dict:
    """fn.stats()["all_reduce"]: calls per step and, per call, the packed buffer and
    the values it holds (label, offset, elements)."""
    calls = [k for k in schedule if isinstance(k, AllReduceKernel)]
    return {"calls": len(calls),
            "buffers": [{"buffer": buffers[k.send].name, "elements": _total(k.members),
                         "dtype": buffers[k.send].dtype, "ranks": k.ranks,
                         "values": [{"value": label, "offset": off, "elements": n}
                                    for label, off, n in k.members]} for k in calls]}


def _total(members):
    """Elements of a packed buffer: an int, or a symbolic bucket's shape as text."""
    counts = [n for _, _, n in members]
    return sum(counts) if all(isinstance(n, int) for n in counts) else " + ".join(map(str, counts))
