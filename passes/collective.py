"""The collective kernels of a Program: one all-reduce of a packed buffer, started by
one kernel and completed by another, so the rest of the step can run in between.

    AllReduceKernel(step="start", send, recv, request, ranks, members, send_parts, ...)
        starts recv[i] = sum over the job's processes of send[i] for every element of
        the contiguous buffer `send` (one MPI_Iallreduce); its handle goes to the
        one-element buffer `request`.
    AllReduceKernel(step="wait", ...)  the same bucket's MPI_Wait: recv holds the sums.
        In one process (ranks == 1) the start does nothing and the wait copies.

passes/lower/collective.py makes them: each member (an all_reduce node of one phase,
one dtype, static shapes) owns a *part* of `send` (`send_parts`, views with offsets)
into which the kernel computing its operand writes directly (`in_place`; else a pack
kernel fills it), and a part of `recv` (`recv_parts`) that its consumers read in place.
The start reads the send parts and writes the request; the wait reads the request and
writes recv and its parts. So the schedule orders a start after every part's writer,
its wait after the start and before every reader; assemble issues a start as soon as
it can and a wait as late as it may. MPI reads `send` and writes `recv` between the
two: `touches()` names those buffers so that the memory plan keeps them alive (and
unshared) across that span without making them ordering edges.

`members` records which graph value occupies which range, for dumps and
`fn.stats()["all_reduce"]`. The sum is over ranks only: a mean is scaled by its
consumers (the `all_reduce_means` pass) or by an unpack kernel, so the call is the
same for both ops.
"""
from __future__ import annotations

from dataclasses import dataclass

STEPS = ("start", "wait")


@dataclass
class AllReduceKernel:
    name: str
    step: str                      # "start" (MPI_Iallreduce) or "wait" (MPI_Wait)
    send: int
    recv: int
    request: int                   # one-element buffer holding the MPI request between the two
    ranks: int                     # processes of the job the program was compiled in
    members: tuple = ()            # ((label, offset, elements), ...) in buffer order
    source: str = ""
    send_parts: tuple = ()         # per member: its part of send (a view with an offset)
    recv_parts: tuple = ()         # per member: its part of recv
    in_place: tuple = ()           # per member: True when its operand's own kernel wrote the part

    def reads(self) -> set:
        return (set(self.send_parts) or {self.send}) if self.step == "start" else {self.request}

    def writes(self) -> set:
        return {self.request} if self.step == "start" else {self.recv, *self.recv_parts}

    def touches(self) -> set:
        """Buffers MPI uses while the reduction is in flight (memory plan only)."""
        return {self.recv} if self.step == "start" else {self.send}

    def describe(self, bufname, program=None) -> list:
        """Lines for fn.dump("kernels") (program: unused, the same signature as a loop's)."""
        procs = f"{self.ranks} process{'es' if self.ranks != 1 else ''}"
        if self.step == "wait":
            return [f"all_reduce wait {bufname(self.recv)} (MPI_Wait on {bufname(self.request)}; "
                    f"the sums over {procs} are complete)"]
        head = (f"all_reduce start sum {bufname(self.recv)} <- {bufname(self.send)} over {procs} "
                f"(one MPI_Iallreduce, request {bufname(self.request)})")
        how = self.in_place or (False,) * len(self.members)
        return [head] + [f"  [{off}:{off + n if isinstance(n, int) else n}] {label}"
                         f"{'  (written in place)' if done else '  (by the pack kernel)'}"
                         for (label, off, n), done in zip(self.members, how)]


def collective_stats(schedule, buffers) -> dict:
    """fn.stats()["all_reduce"]: calls per step and, per call in the order they start,
    the packed buffer and the values it holds (label, offset, elements, whether its
    own kernel wrote it there: `in_place`), and the schedule positions of its start and
    wait (the kernels between them run while the reduction is in flight)."""
    starts = [(pos, k) for pos, k in enumerate(schedule) if isinstance(k, AllReduceKernel) and k.step == "start"]
    waits = {k.request: pos for pos, k in enumerate(schedule) if isinstance(k, AllReduceKernel) and k.step == "wait"}
    return {"calls": len(starts),
            "buffers": [{"buffer": buffers[k.send].name, "elements": _total(k.members),
                         "dtype": buffers[k.send].dtype, "ranks": k.ranks,
                         "start": pos, "wait": waits.get(k.request),
                         "values": [{"value": label, "offset": off, "elements": n, "in_place": bool(done)}
                                    for (label, off, n), done in
                                    zip(k.members, k.in_place or (False,) * len(k.members))]}
                        for pos, k in starts]}


def _total(members):
    """Elements of a packed buffer: an int, or a symbolic bucket's shape as text."""
    counts = [n for _, _, n in members]
    return sum(counts) if all(isinstance(n, int) for n in counts) else " + ".join(map(str, counts))
