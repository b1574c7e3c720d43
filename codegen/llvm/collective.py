"""AllReduceKernel (passes/collective.py) -> a call of MPI_Allreduce inside the entry
point, so a data-parallel step stays one native call (the GIL released throughout).

The function is the MPI_Allreduce of the library mpi4py loaded (nngraph.distributed.
mpi_symbols), registered as `nngraph_mpi_allreduce`; the communicator, datatype and
op handles are read from external globals (`nngraph_mpi_comm`, ...) bound to this
process's values when the code is loaded, so cached object code never holds a
handle of another process (Open MPI's handles are addresses). MPICH-ABI handles are
`int`, Open MPI's pointers: `handle_bits` picks the parameter type. A kernel
compiled for one process (ranks == 1) copies send to recv with llvm.memcpy and
needs no MPI at all.
"""
from __future__ import annotations

import ctypes
import functools

import llvmlite.binding as llvm
import llvmlite.ir as ir

from passes.collective import AllReduceKernel

from .irtypes import I1, I8P, I32, I64, i64

FUNCTION = "nngraph_mpi_allreduce"
HANDLES = ("comm", "sum", "float32", "float64")
_storage: list = []          # the ctypes cells the handle globals point at (kept alive)


@functools.lru_cache(maxsize=None)
def register_symbols() -> int:
    """Bind the MPI symbols for the loader; returns handle_bits."""
    from nngraph import distributed
    syms = distributed.mpi_symbols()
    llvm.add_symbol(FUNCTION, syms["allreduce"])
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


def emit_all_reduce(fb, kern: AllReduceKernel) -> None:
    """In the entry function: recv <- sum over ranks of send (a copy for one rank)."""
    b, program = fb.b, fb.program
    buf = program.buffers[kern.send]
    count = fb.numel(buf.shape)
    itemsize = 4 if buf.dtype == "float32" else 8
    send = b.bitcast(fb.ptr(kern.send), I8P)
    recv = b.bitcast(fb.ptr(kern.recv), I8P)
    module = b.module
    if kern.ranks == 1:
        memcpy = module.declare_intrinsic("llvm.memcpy", [I8P, I8P, I64])
        b.call(memcpy, [recv, send, b.mul(count, i64(itemsize)), ir.Constant(I1, 0)])
        return
    if all(isinstance(s, int) for s in buf.shape) and _product(buf.shape) >= 2 ** 31:
        raise ValueError(f"all_reduce: a packed buffer of {buf.shape} elements exceeds MPI's int count")
    bits = register_symbols()
    h = ir.IntType(bits)
    fnty = ir.FunctionType(I32, [I8P, I8P, I32, h, h, h])
    f = module.globals.get(FUNCTION) or ir.Function(module, fnty, FUNCTION)

    def handle(name):
        v = b.load(_global(module, f"nngraph_mpi_{name}"))
        return b.trunc(v, h) if bits < 64 else v
    b.call(f, [send, recv, b.trunc(count, I32), handle(buf.dtype), handle("sum"), handle("comm")])


def _product(shape) -> int:
    out = 1
    for s in shape:
        out *= s
    return out
