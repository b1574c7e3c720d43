"""Whether a scan's steps are independent across the rows of its carries, so a
backend may run the whole loop on row ranges in parallel: each thread all T steps
of its own rows, with one hand-off per loop instead of one per step.

Why: a recurrent step is one small product (an LSTM's h @ W_hh at N=32 rows) and a
pointwise kernel. Split per step, the product's second part waits on a worker woken
every step, and the pointwise work between products runs on one core while the
worker goes to sleep (an LSTM at T=50, N=32: a two-thread product per step cost what
one thread did). The rows of a batch of sequences never meet inside a recurrent
step (the weight gradients are summed after the loop, passes/loop_sink.py), so the
loop itself can be cut.

The rule (`independent_rows`), on the Program after its memory plan:
- every buffer the body writes (its kernels' outputs, carries' state and next,
  written step buffers), and every buffer sharing memory with one of them, is a
  *row buffer*: its axis 0 has the loop's row size R (a carry's axis 0), and its
  memory is not a part of another buffer;
- every body kernel runs over R on its outer axis 0 (so a backend's [lo, hi) range
  of that axis is a row range) and touches row buffers only at that index (load
  and store index 0 is `idx 0`); a product's rows are the output's rows (no batch,
  one row axis) and its left operand, when a row buffer, is read by its own rows,
  not transposed; its right operand is not a row buffer;
- buffers that share memory (one arena slot or root: body temporaries whose
  lifetimes within a step do not overlap, a per-step result written over the input
  it consumed) have the same bytes per row, so row r of one is row r of the other:
  two threads at different steps never touch the same bytes;
- buffers the body only reads (weights, biases, per-step inputs) may be read at
  any index.
Under these conditions the loop over rows [lo, hi) computes exactly the rows
[lo, hi) of every result: the loop kernels in the same order of operations per
element as the whole loop (bitwise equal); the products with fewer rows on one BLAS
thread, equal up to the BLAS's rounding (its blocking depends on the row count).
"""
from __future__ import annotations

from .loop import ScanLoop
from .program import LoopKernel, MatmulKernel, matrix_axes


def independent_rows(program, loop: ScanLoop):
    """The row size R (int or Dim) when `loop`'s steps are independent across
    axis 0 of its carries (see above), else None."""
    if not loop.carries:
        return None
    bufs = program.buffers
    rows = _lead(bufs[loop.carries[0].state].shape)
    if rows is None or (isinstance(rows, int) and rows < 2):
        return None
    written = {c.state for c in loop.carries} | {c.next for c in loop.carries}
    for k in loop.body:
        if not isinstance(k, (LoopKernel, MatmulKernel)):
            return None            # a nested loop: not analysed
        written |= k.writes()
    touched = set(written) | {b for k in loop.body for b in k.reads()}
    groups = _memory_groups(program, touched)
    shared = {_memory_key(program, b) for b in written}
    row_bufs = {b for b in touched if _memory_key(program, b) in shared}
    if not _row_layout(program, row_bufs, groups, rows):
        return None
    if all(_kernel_by_rows(program, k, row_bufs, rows) for k in loop.body):
        return rows
    return None


def _lead(shape):
    return shape[0] if len(shape) else None


def _memory_key(program, b):
    """Which memory b lives in: its root's arena slot (temps), else its root."""
    root = program.root(b)
    slot = program.plan.get(root)
    return ("slot", slot) if slot is not None else ("buffer", root)


def _memory_groups(program, bufs) -> dict:
    groups: dict = {}
    for b in bufs:
        groups.setdefault(_memory_key(program, b), set()).add(b)
    return groups


def _row_signature(buf):
    """(elements per row, dtype, step or not): equal for buffers whose row r occupies
    the same bytes of their shared memory."""
    elems = 1
    sym = []
    for s in buf.shape[1:]:
        if isinstance(s, int):
            elems *= s
        else:
            sym.append(str(s))
    return elems, tuple(sorted(sym)), buf.dtype, buf.kind == "step"


def _row_layout(program, row_bufs, groups, rows) -> bool:
    bufs = program.buffers
    for b in row_bufs:
        buf = bufs[b]
        if _lead(buf.shape) != rows or program.offset(b) or buf.offset is not None:
            return False
    for members in groups.values():
        rows_in = [b for b in members if b in row_bufs]
        if rows_in and len({_row_signature(bufs[b]) for b in rows_in}) != 1:
            return False
    return True


def _kernel_by_rows(program, k, row_bufs, rows) -> bool:
    if isinstance(k, MatmulKernel):
        return _product_by_rows(program, k, row_bufs, rows)
    if not k.outer or k.outer[0] != rows:
        return False
    return all(_stage_by_rows(st, row_bufs) for st in k.stages)


def _product_by_rows(program, k, row_bufs, rows) -> bool:
    if k.batch or matrix_axes(k.m) != (rows,) or k.b in row_bufs:
        return False
    if k.a in row_bufs and (k.trans_a or len(program.buffers[k.a].shape) != 1 + len(matrix_axes(k.k))):
        return False
    return k.epilogue is None or _stage_by_rows(k.epilogue, row_bufs)


def _stage_by_rows(stage, row_bufs) -> bool:
    """Every load and store of a row buffer indexes axis 0 with the outer axis 0."""
    body = stage.body

    def own_row(value_id) -> bool:
        ins = body[value_id]
        return ins.op == "idx" and ins.attr("axis") == 0

    loads = [ins.args for ins in body if ins.op == "load" and ins.attr("buffer") in row_bufs]
    stores = [st.index for st in stage.stores if st.buffer in row_bufs]
    return all(index and own_row(index[0]) for index in loads + stores)
