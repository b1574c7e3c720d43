"""The process group a program runs in: MPI through mpi4py, when the process is one
rank of a job started by `mpiexec`; a group of one otherwise.

    ng.distributed.rank()   this process's rank (0 outside a job)
    ng.distributed.size()   the number of processes (1 outside a job)

Why mpi4py: it is the MPI binding HPC users already have, its `Allreduce` works on
NumPy buffers at C speed, and the library it loaded is the one the generated code
calls (`mpi_symbols`), so a process never holds two MPIs. mpi4py is imported only
inside a job (an MPI launcher's variables are set), so a single process never needs
it and never initialises MPI; inside a job without it, the first question about
the group raises an error that says what to install.

Faults: inside a job (from the moment nngraph is imported), an unhandled exception on
any rank prints that rank's traceback and calls MPI_Abort, so the other ranks are not
left blocked in a collective (a job never hangs on one rank's error). A rank that
exits early without an exception (sys.exit) waits at its exit for the others, says so
after a while, and aborts the job after NNGRAPH_EXIT_TIMEOUT seconds when that is set.
"""
from __future__ import annotations

import atexit
import functools
import os
import sys
import time
import traceback

import numpy as np

from .errors import NNGraphError

# variables set by MPI launchers (MPICH/Hydra and Intel MPI: PMI_*, Open MPI: OMPI_*,
# PMIx and Slurm's srun with PMI2/PMIx): their presence means "one rank of a job"
_JOB_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
INSTALL_HINT = 'pip install "nngraph[distributed]"  (or: pip install mpi4py mpich)'


class DistributedError(NNGraphError):
    """The process group cannot be used (mpi4py missing in a job, an unsupported MPI)."""


def in_job() -> bool:
    """True when an MPI launcher started this process (its variables are set)."""
    return any(os.environ.get(v) for v in _JOB_VARIABLES)


@functools.lru_cache(maxsize=None)
def mpi():
    """mpi4py's MPI module inside a job (initialising MPI and installing the abort
    hook), or None in a single process."""
    if not in_job():
        return None
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(
            f"this process is one rank of an MPI job (launcher variables are set) but mpi4py "
            f"cannot be imported ({e}); install it: {INSTALL_HINT}") from None
    _check_launcher_matches(MPI)
    atexit.register(_exit_together, MPI)     # runs before mpi4py's MPI_Finalize
    return MPI


# the job size as the launchers of MPICH/Intel MPI (PMI) and Open MPI announce it
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def _check_launcher_matches(MPI) -> None:
    """Refuse a job whose launcher belongs to another MPI than the one mpi4py loaded:
    then every process comes up as a job of one and would train alone, silently."""
    announced = max((int(os.environ[v]) for v in _SIZE_VARIABLES if os.environ.get(v, "").isdigit()),
                    default=0)
    got = MPI.COMM_WORLD.Get_size()
    if announced > 1 and got != announced:
        raise DistributedError(
            f"the launcher started {announced} processes but mpi4py's MPI sees a job of {got}: "
            f"the mpiexec on PATH belongs to another MPI than the one mpi4py loaded "
            f"({MPI.Get_library_version().splitlines()[0].strip()}); start the job with that "
            f"library's mpiexec (with {INSTALL_HINT}: the mpiexec next to this Python)")


def rank() -> int:
    """This process's rank in the job (0 outside a job)."""
    m = mpi()
    return 0 if m is None else m.COMM_WORLD.Get_rank()


def size() -> int:
    """The number of processes in the job (1 outside a job)."""
    m = mpi()
    return 1 if m is None else m.COMM_WORLD.Get_size()


def is_main() -> bool:
    """True on the rank that prints and writes files (rank 0)."""
    return rank() == 0


REDUCE_OPS = ("mean", "sum")


def allreduce_array(a: np.ndarray, op: str = "mean") -> np.ndarray:
    """The elementwise sum or mean of `a` over all ranks (a copy of `a` in a single
    process): the reference implementation of the all_reduce op."""
    a = np.asarray(a)
    if not a.flags.c_contiguous:
        a = a.copy()      # (np.ascontiguousarray would make a 0-d array 1-d)
    m = mpi()
    if m is None:
        return a.copy()
    out = np.empty_like(a)
    m.COMM_WORLD.Allreduce(a, out, op=m.SUM)
    if op == "mean":
        out = (out * np.asarray(1.0 / m.COMM_WORLD.Get_size(), dtype=a.dtype)).astype(a.dtype, copy=False)
    return out


class _CopyOnWait:
    """A single process's all-reduce request: Wait() copies send to recv."""

    def __init__(self, send, recv):
        self.send, self.recv = send, recv

    def Wait(self):  # noqa: N802 - mpi4py's Request spelling
        np.copyto(self.recv, self.send)


def start_allreduce_sum(send: np.ndarray, recv: np.ndarray):
    """Start recv <- the elementwise sum of `send` over all ranks (MPI_Iallreduce on
    C-contiguous arrays of one dtype and size); returns the request, whose Wait()
    completes it. Neither array may be touched in between. The program interpreter's
    all-reduce kernels (passes/collective.py)."""
    m = mpi()
    if m is None:
        return _CopyOnWait(send, recv)
    return m.COMM_WORLD.Iallreduce(send, recv, op=m.SUM)


def allreduce_floats(values, op: str = "mean") -> list:
    """A list of Python floats reduced over all ranks (metrics, validation scores)."""
    return allreduce_array(np.asarray(values, dtype=np.float64), op).tolist()


def barrier() -> None:
    m = mpi()
    if m is not None:
        m.COMM_WORLD.Barrier()


def _install_abort_hook() -> None:
    """Inside a job: an unhandled exception prints this rank's traceback, then aborts
    the whole job (MPI_Abort), so no other rank waits forever in a collective.
    Installed when nngraph is imported; mpi4py is imported only if the hook fires."""
    def hook(kind, value, tb):
        try:
            MPI = mpi()
        except DistributedError:
            MPI = None
        who = f"rank {MPI.COMM_WORLD.Get_rank()}/{MPI.COMM_WORLD.Get_size()}" if MPI else "a rank"
        sys.stderr.write(f"[nngraph {who}] unhandled exception; aborting the MPI job:\n"
                         + "".join(traceback.format_exception(kind, value, tb)))
        sys.stderr.flush()
        sys.stdout.flush()
        if MPI is None:
            os._exit(1)         # no mpi4py: the launcher sees this rank fail and ends the job
        MPI.COMM_WORLD.Abort(1)

    sys.excepthook = hook


EXIT_NOTE_SECONDS = 30.0


def _exit_together(MPI) -> None:
    """At a rank's exit, before MPI_Finalize: wait (messages to and from every other rank,
    polled) for every rank to reach its exit too. A rank that leaves early, with sys.exit(code)
    say (which no excepthook sees), would otherwise sit in MPI_Finalize while the
    others wait for it in a collective: a silent hang. So after EXIT_NOTE_SECONDS it
    says so on stderr, and with NNGRAPH_EXIT_TIMEOUT=<seconds> set it aborts the job
    (MPI_Abort) after that long; without it it keeps waiting, since another rank may
    still be doing legitimate work of its own (rank 0 writing files, say)."""
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return
    who = f"[nngraph rank {comm.Get_rank()}/{comm.Get_size()}]"
    limit = float(os.environ.get("NNGRAPH_EXIT_TIMEOUT", "0") or 0)
    requests, t0, noted = _exit_messages(MPI, comm), time.monotonic(), False
    while not MPI.Request.Testall(requests):
        waited = time.monotonic() - t0
        if limit and waited > limit:
            sys.stderr.write(f"{who} reached its exit {waited:.0f} s ago and the other ranks have not "
                             f"(NNGRAPH_EXIT_TIMEOUT={limit:g}); aborting the MPI job\n")
            sys.stderr.flush()
            comm.Abort(1)
        if not noted and waited > EXIT_NOTE_SECONDS:
            noted = True
            sys.stderr.write(f"{who} reached its exit and has waited {waited:.0f} s for the other ranks to "
                             f"reach theirs; if one waits for this rank in a collective, the job will not end "
                             f"by itself (set NNGRAPH_EXIT_TIMEOUT=<seconds> to abort it then)\n")
            sys.stderr.flush()
        time.sleep(0.01)


def _exit_messages(MPI, comm) -> list:
    """Requests of "I am at my exit" sent to and received from every other rank, point to
    point with the largest tag: never a collective, since a collective posted here would
    be matched with one another rank is still inside and hand it wrong values."""
    tag = comm.Get_attr(MPI.TAG_UB)
    me, size = comm.Get_rank(), comm.Get_size()
    _EXIT_BUFFERS[:] = [np.zeros(1, np.int8) for _ in range(2 * size)]
    sends = [comm.Isend(_EXIT_BUFFERS[r], dest=r, tag=tag) for r in range(size) if r != me]
    recvs = [comm.Irecv(_EXIT_BUFFERS[size + r], source=r, tag=tag) for r in range(size) if r != me]
    return sends + recvs


_EXIT_BUFFERS: list = []       # alive until the requests complete


if in_job():
    _install_abort_hook()


# ----------------------------------------------------------------------------- native calls

@functools.lru_cache(maxsize=None)
def mpi_symbols() -> dict:
    """What generated code needs to call MPI of the library mpi4py loaded: {"allreduce",
    "iallreduce", "wait": function addresses, "handle_bits": 32 (MPICH ABI: int handles,
    requests included) or 64 (Open MPI: pointers), "comm", "sum", "float32", "float64":
    handle values}."""
    import ctypes
    MPI = mpi()
    if MPI is None:
        raise DistributedError("mpi_symbols: not in an MPI job")
    lib = ctypes.CDLL(MPI.__file__)          # dlsym searches its dependencies: the loaded libmpi
    vendor = MPI.get_vendor()[0]
    return {**{name: ctypes.cast(getattr(lib, f"MPI_{fn}"), ctypes.c_void_p).value
               for name, fn in (("allreduce", "Allreduce"), ("iallreduce", "Iallreduce"), ("wait", "Wait"))},
            "handle_bits": 64 if vendor == "Open MPI" else 32,
            "comm": MPI._handleof(MPI.COMM_WORLD), "sum": MPI._handleof(MPI.SUM),
            "float32": MPI._handleof(MPI.FLOAT), "float64": MPI._handleof(MPI.DOUBLE)}
