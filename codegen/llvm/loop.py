"""A ScanLoop (passes/loop.py) inside the native entry point: the steps are a
counted loop of the entry function itself, so a whole scan is one call from
Python with no Python per step.

Per step the entry writes each step buffer's address (its stacked buffer's plus
the step's byte offset) into its pointer array, calls the body's kernels (BLAS
for the products, the generated loop functions for the pointwise work) exactly
as it calls top-level kernels, and copies each carry's new value into its state
buffer (llvm.memcpy). The body's kernel functions read buffer addresses from
the pointer array when they start, so they see the step's slices.

The pointer array the caller passes is left alone: with a loop in the program,
the entry first copies it into one of its own (`private_pointers`), which the
steps then rewrite.
"""
from __future__ import annotations

import llvmlite.ir as ir

from nngraph.types import np_dtype
from passes.loop import copies_after_step, copies_before_loop
from passes.program import pointer_buffer

from .irtypes import I1, I8P, I64, i64


def private_pointers(fb, count: int) -> None:
    """Make fb's pointer array a copy (in fb's frame) of the one it was called with."""
    eb = fb.eb
    local = eb.alloca(ir.ArrayType(I8P, count), name="bufs_local")
    local_p = eb.bitcast(local, ir.PointerType(I8P))
    emit_memcpy(fb.module, eb, eb.bitcast(local_p, I8P), eb.bitcast(fb.bufs_arg, I8P), i64(8 * count))
    fb.bufs_arg = local_p


def emit_memcpy(module, b, dst, src, nbytes):
    fn = module.globals.get("llvm.memcpy.p0i8.p0i8.i64")
    if fn is None:
        fn = module.declare_intrinsic("llvm.memcpy", [I8P, I8P, I64])
    b.call(fn, [dst, src, nbytes, ir.Constant(I1, 0)])


def pointer_slot(fb, buf_id):
    """The address in fb's pointer array that holds buf_id's data pointer."""
    return fb.b.gep(fb.bufs_arg, [i64(pointer_buffer(fb.program.buffers, buf_id))])


def _bytes(fb, buf_id):
    buf = fb.program.buffers[buf_id]
    return fb.b.mul(fb.numel(buf.shape), i64(np_dtype(buf.dtype).itemsize))


def _copy(fb, dst, src):
    b = fb.b
    emit_memcpy(fb.module, b, b.load(pointer_slot(fb, dst)), b.load(pointer_slot(fb, src)), _bytes(fb, dst))


def copy_carry_inits(fb, loop) -> None:
    """Each carry's init copied into its state (before step 0), unless it is the state's memory."""
    for state, init in copies_before_loop(fb.program, loop):
        _copy(fb, state, init)


def set_step_slices(fb, loop, t, length) -> None:
    """Point every step buffer of fb's pointer array at slice t of its stacked buffer
    (length - 1 - t when the loop is reverse)."""
    b = fb.b
    at = b.sub(b.sub(length, i64(1)), t) if loop.reverse else t
    for sl in loop.slices:
        start = b.load(pointer_slot(fb, sl.stacked))
        b.store(b.gep(start, [b.mul(at, _bytes(fb, sl.step))]), pointer_slot(fb, sl.step))


def emit_scan(fb, loop, base: str, emit) -> None:
    """The loop at fb's position; emit(kernel, name) emits one body kernel."""
    copy_carry_inits(fb, loop)
    length = fb.size(loop.length)
    with fb.loop(i64(0), length, f"{base}_t") as t:
        set_step_slices(fb, loop, t, length)
        for n, kern in enumerate(loop.body):
            emit(kern, f"{base}_{n}_{kern.name}"[:60])
        for state, nxt in copies_after_step(fb.program, loop):
            _copy(fb, state, nxt)
