"""AllReduceKernel (passes/collective.py) -> a launcher of the generated Triton module
that calls MPI from the host: the packed send buffer is copied to host memory, summed
over the job's processes by one MPI_Allreduce of the library mpi4py loaded (the one
nngraph.distributed uses), and copied into the packed receive buffer on the device.

Why through the host: it works with every MPI (no CUDA-aware build needed) and the
buffer is one contiguous copy each way. A kernel compiled for one process is a device
copy and needs no MPI. The helper is printed into the module, so `fn.dump("triton")`
stays a file that runs as it is (under mpiexec for a program compiled in a job).
"""
from __future__ import annotations

from .names import symbol_name, symbols_of

HELPER = '''\
def all_reduce_sum(send, recv, ranks):
    """recv <- the elementwise sum over the job's `ranks` processes of send (one
    MPI_Allreduce through host memory; a device copy when ranks == 1)."""
    if ranks == 1:
        recv.copy_(send)
        return
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    if comm.Get_size() != ranks:
        raise RuntimeError(f"this program was compiled in a job of {ranks} processes; this job has "
                           f"{comm.Get_size()}: compile it again inside the job that runs it")
    host = send.detach().to("cpu").contiguous()
    total = torch.empty_like(host)
    comm.Allreduce(host.numpy(), total.numpy(), op=MPI.SUM)
    recv.copy_(total)
'''


class AllReducePrinter:
    """The launcher of one AllReduceKernel (no Triton kernel of its own)."""

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
        return (f"def launch_{self.fname}(b{''.join(', ' + s for s in syms)}):\n"
                f'    """{names[k.recv]} <- the sum over {k.ranks} process{"es" if k.ranks != 1 else ""} '
                f'of {names[k.send]} (one MPI_Allreduce)."""\n'
                f"    all_reduce_sum(b[{names[k.send]!r}], b[{names[k.recv]!r}], {k.ranks})\n")
