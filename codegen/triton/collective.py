"""AllReduceKernel (passes/collective.py) -> launchers of the generated Triton module that
call MPI from the host: at the start the packed send buffer is copied to host memory and
one MPI_Iallreduce of the library mpi4py loaded (the one nngraph.distributed uses) sums
it over the job's processes; at the wait the sums are copied into the packed receive
buffer on the device.

Why through the host: it works with every MPI (no CUDA-aware build needed) and the
buffer is one contiguous copy each way. A kernel compiled for one process is a device
copy and needs no MPI. The helper is printed into the module, so `fn.dump("triton")`
stays a file that runs as it is (under mpiexec for a program compiled in a job).
"""
from __future__ import annotations

from .names import symbol_name, symbols_of

HELPER = '''\
_IN_FLIGHT = {}   # request buffer name -> (MPI request, host send copy, host sums)


def all_reduce_start(name, send, recv, ranks):
    """Start recv <- the elementwise sum over the job's `ranks` processes of send: send
    copied to the host and one MPI_Iallreduce (nothing to start when ranks == 1)."""
    if ranks == 1:
        return
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    if comm.Get_size() != ranks:
        raise RuntimeError(f"this program was compiled in a job of {ranks} processes; this job has "
                           f"{comm.Get_size()}: compile it again inside the job that runs it")
    host = send.detach().to("cpu").contiguous()
    total = torch.empty_like(host)
    _IN_FLIGHT[name] = (comm.Iallreduce(host.numpy(), total.numpy(), op=MPI.SUM), host, total)


def all_reduce_wait(name, send, recv, ranks):
    """Complete the all-reduce `name` started: the sums copied into recv on the device
    (send copied to recv when ranks == 1)."""
    if ranks == 1:
        recv.copy_(send)
        return
    request, _, total = _IN_FLIGHT.pop(name)
    request.Wait()
    recv.copy_(total)
'''


class AllReducePrinter:
    """The launcher of one AllReduceKernel, its start or its wait (no Triton kernel)."""

    def __init__(self, program, kernel, fname, bufnames):
        self.p, self.k, self.fname, self.bufnames = program, kernel, fname, bufnames
        self.helpers = set()

    def symbols(self) -> list:
        return sorted(symbols_of(self.p.buffers[self.k.send].shape))

    def kernel_source(self) -> str:
        return ""

    def launcher_source(self) -> str:
        k, names = self.k, self.bufnames
        syms = [symbol_name(s) for s in self.symbols()]
        what = ("start: one MPI_Iallreduce" if k.step == "start" else "wait: MPI_Wait, then the sums on the device")
        return (f"def launch_{self.fname}(b{''.join(', ' + s for s in syms)}):\n"
                f'    """{names[k.recv]} <- the sum over {k.ranks} process{"es" if k.ranks != 1 else ""} '
                f'of {names[k.send]} ({what})."""\n'
                f"    all_reduce_{k.step}({names[k.request]!r}, b[{names[k.send]!r}], b[{names[k.recv]!r}], "
                f"{k.ranks})\n")
