"""A direct convolution's epilogue applied to its accumulator tile before the store
(codegen/llvm/conv_direct.py): bias per output channel, a residual read at the same
points, ReLU, and the like, computed in registers instead of a pass of its own.

Why: run as a separate pass after each part of the product (conv_gemm.py), the
epilogue re-reads the whole output from the cache and writes it again; ResNet-50's
1x1 expand layer 64 -> 256 at 56x56 took 555 us for its product alone and 761 us
with bias + residual add + ReLU on one thread of an AVX-512 Xeon (MKL). onnxruntime
applies it as it stores.

Only forms that give the same float32 results as the separate pass are taken
(tile_epilogue; anything else keeps that pass): one stage of one point, no
reductions, its one store at the product's own point, every load either the product
at that point (the accumulator), a buffer read at the same flattened point of an
[rows, points] layout (a residual: `point` operand), or one element per output
channel (a bias: `row` operand), and float32 ops whose vector form is the scalar
one lane by lane (add, sub, mul, relu, maximum, minimum: codegen/llvm/scalar.py's
formulas, written once more here for vectors), with no constant added to a
product (scalar.py contracts that into an FMA). Operands that the kernel writes
(other than at the accumulator's point) are refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir

from .irtypes import I32, i64, intrinsic

VECTOR_OPS = ("add", "sub", "mul", "relu", "maximum", "minimum")


@dataclass(frozen=True)
class TileEpilogue:
    """The epilogue as a list of nodes over one output point: ("acc",), ("row", k),
    ("point", k), ("const", value) or (op, argument nodes...); `operands` are the
    (buffer, kind, row stride, offset) of each operand k (kind "row": element
    offset + row * stride; "point": offset + row * points + point)."""
    nodes: tuple
    operands: tuple

    def describe(self) -> str:
        """A short text for dumps and timing keys: the ops in order."""
        return " ".join(n[0] for n in self.nodes)


def bias_residual_relu(residual: bool) -> TileEpilogue:
    """relu((acc + bias[row]) + residual[row, point]) (without the residual: relu(acc +
    bias[row])), the order a layer's graph makes: what conv_choice times and the tests
    check. Operand buffers are None (the caller passes arrays)."""
    nodes = [("acc",), ("row", 0), ("add", 0, 1)]
    operands = [(None, "row", 1, 0)]
    if residual:
        nodes += [("point", 1), ("add", 2, 3)]
        operands.append((None, "point", 0, 0))
    nodes.append(("relu", len(nodes) - 1))
    return TileEpilogue(tuple(nodes), tuple(operands))


def tile_epilogue(program, kern, outer, stages) -> TileEpilogue | None:
    """kern's epilogue (conv_gemm.fused_epilogue's (outer, stages)) as a TileEpilogue
    when it has one of the exact forms above, else None."""
    if len(stages) != 1 or len(outer) != 2 or not all(isinstance(s, int) for s in outer):
        return None
    st = stages[0]
    if st.inner or st.reduce or len(st.stores) != 1 or st.stores[0].accumulate:
        return None
    affine = {}
    for k, ins in enumerate(st.body):
        if ins.dtype == "int64" and (a := _affine(ins, affine)) is not None:
            affine[k] = a
    store = st.stores[0]
    if not _at_product_point(program, kern, store.buffer, _offset(program, store.buffer, store.index, affine)):
        return None
    nodes, where, operands = [], {}, []
    for k, ins in enumerate(st.body):
        if k in affine:
            continue
        node = _node(program, kern, ins, affine, [nodes[where[a]] if a in where else None for a in ins.args],
                     [where.get(a) for a in ins.args], operands, outer[1])
        if node is None:
            return None
        where[k] = len(nodes)
        nodes.append(node)
    if where.get(store.value) != len(nodes) - 1:
        return None
    return TileEpilogue(tuple(nodes), tuple(operands))


def _node(program, kern, ins, affine, arg_nodes, args, operands, points):
    """ins as a node (args: its arguments' node numbers), or None where it is not one
    of the exact forms."""
    if ins.dtype != "float32":
        return None
    if ins.op == "const":
        return ("const", float(ins.attr("value")))
    if ins.op == "load":
        return _load_node(program, kern, ins, affine, operands, points)
    if ins.op not in VECTOR_OPS or None in args:
        return None
    kinds = {n[0] for n in arg_nodes}
    if ins.op in ("add", "sub") and {"const", "mul"} <= kinds:
        return None     # scalar.py contracts product + constant into one FMA
    return (ins.op,) + tuple(args)


def _load_node(program, kern, ins, affine, operands, points):
    buffer = ins.attr("buffer")
    buf = program.buffers[buffer]
    if ins.attr("masked") or buf.dtype != "float32" or len(ins.args) != len(buf.shape):
        return None
    off = _offset(program, buffer, ins.args, affine)
    if off is None:
        return None
    if program.root(buffer) == program.root(kern.out):    # written by the kernel: its own point only
        return ("acc",) if _at_product_point(program, kern, buffer, off) else None
    rows, cols, const = off
    if cols == 1 and rows == points:
        operands.append((buffer, "point", 0, const))
        return ("point", len(operands) - 1)
    if cols == 0:
        operands.append((buffer, "row", rows, const))
        return ("row", len(operands) - 1)
    return None


def _at_product_point(program, kern, buffer, off) -> bool:
    """Is element `off` (row, point, constant coefficients) of `buffer` the product's
    own output point, kern.out[row, point]?"""
    if off is None or program.root(buffer) != program.root(kern.out):
        return False
    rows, cols, const = off
    points = 1
    for s in program.buffers[kern.out].shape[1:]:
        points *= s
    return (rows, cols) == (points, 1) and program.offset(buffer) + const == program.offset(kern.out)


def _affine(ins, affine):
    """An int64 value as (row, point, constant) coefficients of the loop's two axes,
    or None."""
    if ins.op == "idx":
        return {0: (1, 0, 0), 1: (0, 1, 0)}.get(ins.attr("axis"))
    if ins.op == "const":
        return (0, 0, int(ins.attr("value")))
    if len(ins.args) != 2 or any(a not in affine for a in ins.args):
        return None
    x, y = affine[ins.args[0]], affine[ins.args[1]]
    if ins.op == "add":
        return tuple(p + q for p, q in zip(x, y))
    if ins.op == "sub":
        return tuple(p - q for p, q in zip(x, y))
    if ins.op == "mul" and (x[:2] == (0, 0) or y[:2] == (0, 0)):
        c, v = (x[2], y) if x[:2] == (0, 0) else (y[2], x)
        return tuple(c * p for p in v)
    return None


def _offset(program, buffer, index, affine):
    """The row-major element offset of buffer[index] as (row, point, constant)
    coefficients, or None where an index is not affine in the two axes."""
    shape = program.buffers[buffer].shape
    if any(not isinstance(s, int) for s in shape) or any(a not in affine for a in index):
        return None
    total, stride = (0, 0, 0), 1
    for p in range(len(shape) - 1, -1, -1):
        total = tuple(t + stride * c for t, c in zip(total, affine[index[p]]))
        stride *= shape[p]
    return total


# ----------------------------------------------------------------------------- emission

def emit_tile_epilogue(b, epi: TileEpilogue, acc, row, pointers, at_point, mask):
    """The epilogue's value (a vector like `acc`) at output channel `row` (i64): the
    operands from `pointers` (one float* per operand, offsets not yet applied),
    `at_point(p)` the pointer of a point operand's vector at this tile's points (of
    operand base p), loaded under `mask` (lanes off read as 0, never stored; None:
    all lanes)."""
    vt = acc.type
    vals = []
    for node in epi.nodes:
        kind = node[0]
        if kind == "acc":
            v = acc
        elif kind == "const":
            v = ir.Constant(vt, [node[1]] * vt.count)
        elif kind in ("row", "point"):
            v = _operand(b, epi.operands[node[1]], pointers[node[1]], row, at_point, mask, vt)
        else:
            v = _vector_op(b, kind, [vals[a] for a in node[1:]])
        vals.append(v)
    return vals[-1]


def _operand(b, operand, ptr, row, at_point, mask, vt):
    _, kind, stride, const = operand
    if kind == "row":
        s = b.load(b.gep(ptr, [b.add(b.mul(row, i64(stride)), i64(const))]))
        return splat(b, s, vt)
    return masked_load(b, at_point(b.gep(ptr, [i64(const)])), mask, vt)


def masked_load(b, p, mask, vt):
    """The vector `vt` at float* p, lanes off in `mask` not read (0); every lane where
    mask is None."""
    if mask is None:
        return b.load(b.bitcast(p, vt.as_pointer()), align=4)
    load = intrinsic(b.module, f"llvm.masked.load.v{vt.count}f32.p0v{vt.count}f32", vt,
                     [vt.as_pointer(), I32, mask.type, vt])
    return b.call(load, [b.bitcast(p, vt.as_pointer()), ir.Constant(I32, 4), mask, ir.Constant(vt, [0.0] * vt.count)])


def _vector_op(b, op, args):
    """scalar.py's float formula of `op`, lane by lane (see there)."""
    if op == "add":
        return b.fadd(*args)
    if op == "sub":
        return b.fsub(*args)
    if op == "mul":
        return b.fmul(*args)
    x = args[0]
    zero = ir.Constant(x.type, [0.0] * x.type.count)
    if op == "relu":     # np.maximum(x, 0): NaN stays NaN
        return b.select(b.fcmp_ordered("<", x, zero), zero, x)
    y = args[1]
    pick = b.or_(b.fcmp_ordered(">=" if op == "maximum" else "<=", x, y), b.fcmp_unordered("uno", x, x))
    return b.select(pick, x, y)


def splat(b, s, vt):
    """A vector of `vt` with every lane `s`."""
    one = b.insert_element(ir.Constant(vt, ir.Undefined), s, ir.Constant(I32, 0))
    return b.shuffle_vector(one, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(I32, vt.count), [0] * vt.count))
