"""A batch-1 convolution's product and its epilogue (bias, residual add, relu) in one
pass per thread: each part of the product that a thread computes (matmul.py's
function over a range of output rows or columns) is followed, on the same thread,
by the epilogue over the same part of the output.

Why: the product of one image is split across our threads (MatmulKernel.own_threads,
passes/lower/conv.py), but its epilogue was a separate launch over the whole output,
which ran on one thread when it was under the loop split threshold (every ResNet-50
expand layer: 512 x 784 with bias + add + relu, for example) and started threads of
its own when it was not, reading an output that was no longer in cache. Fused, the
epilogue is split exactly as the product is, with no launch of its own, and reads
each part right after the BLAS call wrote it.

A part cut along the columns (the spatial points) runs in chunks of columns whose
output fits half the host's L2 cache (codegen/host.py): a BLAS call on the chunk,
then its epilogue, so the epilogue reads from L2 even where the whole output does
not fit there (the 7x7 stem's 64 x 112 x 112, the 256 x 56 x 56 expand layers).
Each chunk re-packs only the weights (rows x k), which a part of columns re-packs
anyway. A product not marked own_threads that runs as one part keeps one call over
all its columns under a multi-threaded BLAS (chunks_one_part).

A direct convolution (kern.window, codegen/llvm/conv_direct.py) is cut along its
rows (output channels) only; its kernel applies the epilogue to each tile before it
stores where the epilogue has an exact form for that (codegen/llvm/conv_epilogue.py:
bias, residual, relu...), else each part runs its kernel then its epilogue.

The same holds for any product with static rows and an epilogue: a weight
gradient with its SGD update (W - lr * x^T g over 784 x 512 in the MLP step) ran its
update as a launch of its own, on one thread below the loop split threshold, over
an output the two threads' parts had left in two different L2 caches.

Fused only where exact: static rows (a convolution's output channels), the
epilogue reads the product at its own point only
(passes/coalesce.acc_as_load), its loop domain is (rows, columns) once the spatial
axes are merged, and it stores to no buffer the product reads (a part's epilogue
may run while another thread's product still reads its operands).
"""
from __future__ import annotations

from codegen.host import host_facts
from nngraph.types import np_dtype
from passes.coalesce import acc_as_load, coalesce

from . import blas
from .conv_direct import emit_direct_function
from .conv_epilogue import tile_epilogue
from .irtypes import I8P, I64, i64
from .kernel import emit_loop_function
from .loops import FnBuilder
from .matmul import emit_matmul_function, split_axis, splits_columns
from .stage import emit_point


def fused_epilogue(program, kern):
    """(outer, stages): kern's epilogue as a loop over (rows, columns) of its product,
    when kern's product can run its epilogue part by part (see above); else None."""
    rows = kern.axes("m")
    if kern.epilogue is None or kern.batch or len(rows) != 1 or not isinstance(rows[0], int):
        return None
    if kern.window is None and not splits_columns(program, kern):
        return None
    outer = kern.epilogue_domain()
    stages = acc_as_load(program, outer, [kern.epilogue], kern.out)
    if stages is None:
        return None
    outer, stages = coalesce(program, outer, stages)
    operands = {program.root(kern.a), program.root(kern.b)}
    if len(outer) != 2 or any(program.root(s.buffer) in operands for s in stages[0].stores):
        return None
    return outer, stages


def chunk_columns(rows: int, itemsize: int) -> int:
    """Columns per chunk of a column part: an output chunk of half the L2 cache, at
    least one cache line of columns."""
    facts = host_facts()
    line = max(1, 64 // itemsize)
    return max(line, facts.l2 // 2 // max(1, rows * itemsize) // line * line)


def emit_fused_product(fb: FnBuilder, base, kern, fused, launch) -> None:
    """Call kern's product + epilogue from the entry function: cut along the longer
    output axis (as entry._launch_rows_or_columns cuts a product), each part a fused
    function; `launch(f, n0)` runs f over [0, n0), split across threads or not."""
    module, program, syms = fb.module, fb.program, fb.symbols
    outer, stages = fused
    b = fb.b
    if kern.window is not None:     # a direct convolution (conv_direct.py) splits by rows only
        in_tile = tile_epilogue(program, kern, outer, stages)
        if in_tile is not None:     # applied to each tile in registers (conv_epilogue.py)
            launch(emit_direct_function(module, base + "_fused_rows", program, syms, kern, in_tile),
                   fb.numel(kern.axes("m")))
            return
        launch(_part_function(module, base + "_fused_rows", program, syms,
                              emit_matmul_function(module, base, program, syms, kern),
                              emit_loop_function(module, base + "_epi_rows", program, syms, outer, stages)),
               fb.numel(kern.axes("m")))
        return
    by_rows = _part_function(module, base + "_fused_rows", program, syms,
                             emit_matmul_function(module, base, program, syms, kern),
                             emit_loop_function(module, base + "_epi_rows", program, syms, outer, stages))
    by_columns = _chunked_function(module, base + "_fused_cols", program, syms, kern,
                                   emit_matmul_function(module, base + "_cols", program, syms, kern, columns=True),
                                   _column_epilogue(module, base + "_epi_cols", program, syms, outer, stages))
    rows, cols = fb.numel(split_axis(program, kern)), fb.numel(kern.axes("n"))
    with b.if_else(b.icmp_signed(">", cols, rows)) as (columns, otherwise):
        with columns:
            launch(by_columns, cols)
        with otherwise:
            launch(by_rows, rows)


def _part_function(module, name, program, syms, product, epilogue):
    """`f(bufs, sizes, lo, hi, extra)`: product(lo, hi), then epilogue(lo, hi)."""
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=syms)
    args = [fb.bufs_arg, fb.sizes_arg, *fb.args]
    fb.b.call(product, args)
    fb.b.call(epilogue, args)
    fb.b.ret_void()
    return fb.finish()


def _chunked_function(module, name, program, syms, kern, product, epilogue):
    """`f(bufs, sizes, lo, hi, extra)`: columns [lo, hi) in chunks (chunk_columns),
    each chunk's product, then its epilogue."""
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=syms)
    b = fb.b
    lo, hi, extra = fb.args
    chunk = i64(chunk_columns(kern.axes("m")[0], np_dtype(program.buffers[kern.out].dtype).itemsize))
    if not chunks_one_part(kern):
        whole = b.icmp_signed("==", b.sub(hi, lo), fb.numel(kern.axes("n")))
        chunk = b.select(whole, b.select(b.icmp_signed(">", hi, lo), b.sub(hi, lo), i64(1)), chunk)
    count = b.sdiv(b.add(b.sub(hi, lo), b.sub(chunk, i64(1))), chunk)
    with fb.loop(i64(0), count, "chunk") as q:
        c0 = b.add(lo, b.mul(q, chunk))
        c1 = b.add(c0, chunk)
        c1 = b.select(b.icmp_signed("<", c1, hi), c1, hi)
        for f in (product, epilogue):
            b.call(f, [fb.bufs_arg, fb.sizes_arg, c0, c1, extra])
    b.ret_void()
    return fb.finish()


def chunks_one_part(kern) -> bool:
    """Does a launch that runs as one part (not split across our threads) still cut the
    product's columns into chunks? matmul.py runs a call narrower than the whole width on
    one BLAS thread (a part of a split); a product not marked own_threads, below the
    split threshold, was one call on all the BLAS's threads before it was fused, and
    stays so where the BLAS has several (NNGRAPH_BLAS=openblas); under a one-thread BLAS
    (MKL's sequential layer) chunks lose nothing and keep the epilogue's reads in L2."""
    return kern.own_threads or blas.threads_per_call() == 1


def _column_epilogue(module, name, program, syms, outer, stages):
    """`f(bufs, sizes, lo, hi, extra)`: the epilogue at every row, columns [lo, hi)."""
    fb = FnBuilder(module, name, [I64, I64, I8P], program=program, symbols=syms)
    lo, hi, _ = fb.args
    with fb.loop(i64(0), fb.size(outer[0]), "row") as r:
        with fb.loop(lo, hi, "col") as c:
            emit_point(fb, [r, c], stages, None)
    fb.b.ret_void()
    return fb.finish()

