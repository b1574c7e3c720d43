"""AllReduceKernel (passes/collective.py) -> calls of MPI_Iallreduce (the start) and
MPI_Wait (the wait) inside the entry point, so a data-parallel step stays one native
call (the GIL released throughout) and the kernels scheduled between the two run while
the reduction is in flight.

The functions are those of the library mpi4py loaded (nngraph.distributed.mpi_symbols),
registered as `nngraph_mpi_iallreduce` and `nngraph_mpi_wait`; the communicator, datatype and
op handles are read from external globals (`nngraph_mpi_comm`, ...) bound to this
process's values when the code is loaded, so cached object code never holds a
handle of another process (Open MPI's handles are addresses). MPICH-ABI handles are
`int`, Open MPI's pointers: `handle_bits` picks the parameter type; the request
lives in the Program's one-element int64 buffer, room for either. A kernel compiled
for one process (ranks == 1) copies send to recv with llvm.memcpy at the wait and
needs no MPI at all.
"""
from __future__ import annotations

import ctypes
import functools

import llvmlite.binding as llvm
import llvmlite.ir as ir

from passes.collective import AllReduceKernel

from .irtypes import I1, I8P, I32, I64, i64

FUNCTIONS = {"iallreduce": "nngraph_mpi_iallreduce", "wait": "nngraph_mpi_wait"}
HANDLES = ("comm", "sum", "float32", "float64")
STATUS_BYTES = 256           # room for an MPI_Status of any MPI (MPICH: 20 bytes, Open MPI: 24)
_storage: list = []          # the ctypes cells the handle globals point at (kept alive)


@functools.lru_cache(maxsize=None)
def register_symbols() -> int:
    """Bind the MPI symbols for the loader; returns handle_bits."""
    from nngraph import distributed
    syms = distributed.mpi_symbols()
    for key, name in FUNCTIONS.items():
        llvm.add_symbol(name, syms[key])
    for h in HANDLES:
        cell = ctypes.c_int64(syms[h])
        _storage.append(cell)
        llvm.add_symbol(f"nngraph_mpi_{h}", ctypes.addressof(cell))
    return syms["handle_bits"]


def _global(module, name):
    g = module.globals.get(name)
    if g is None:
        g = ir.GlobalVariable(module, I64, name)
        g.linkage = "external"
    return g


def _function(module, key, fnty):
    return module.globals.get(FUNCTIONS[key]) or ir.Function(module, fnty, FUNCTIONS[key])


def emit_all_reduce(fb, kern: AllReduceKernel) -> None:
    """In the entry function: the start (MPI_Iallreduce of send into recv, the request
    stored in kern.request's buffer) or the wait (MPI_Wait on it). One process: the
    start does nothing and the wait copies send to recv."""
    b, program = fb.b, fb.program
    buf = program.buffers[kern.send]
    count = fb.numel(buf.shape)
    send = b.bitcast(fb.ptr(kern.send), I8P)
    recv = b.bitcast(fb.ptr(kern.recv), I8P)
    module = b.module
    if kern.ranks == 1:
        if kern.step == "wait":
            itemsize = 4 if buf.dtype == "float32" else 8
            memcpy = module.declare_intrinsic("llvm.memcpy", [I8P, I8P, I64])
            b.call(memcpy, [recv, send, b.mul(count, i64(itemsize)), ir.Constant(I1, 0)])
        return
    if all(isinstance(s, int) for s in buf.shape) and _product(buf.shape) >= 2 ** 31:
        raise ValueError(f"all_reduce: a packed buffer of {buf.shape} elements exceeds MPI's int count")
    bits = register_symbols()
    h = ir.IntType(bits)
    request = b.bitcast(fb.ptr(kern.request), I8P)     # an int64 cell: room for either ABI's MPI_Request
    if kern.step == "wait":
        wait = _function(module, "wait", ir.FunctionType(I32, [I8P, I8P]))
        status = fb.alloca(ir.ArrayType(ir.IntType(8), STATUS_BYTES), name="mpi_status")
        b.call(wait, [request, b.bitcast(status, I8P)])
        return
    fnty = ir.FunctionType(I32, [I8P, I8P, I32, h, h, h, I8P])
    start = _function(module, "iallreduce", fnty)

    def handle(name):
        v = b.load(_global(module, f"nngraph_mpi_{name}"))
        return b.trunc(v, h) if bits < 64 else v
    b.call(start, [send, recv, b.trunc(count, I32), handle(buf.dtype), handle("sum"), handle("comm"), request])


def _product(shape) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
