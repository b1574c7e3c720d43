"""How each nngraph op is written as ONNX nodes: `EXPORTERS[op](emitter, node,
input_names) -> output name`, one entry per exportable op."""
from __future__ import annotations

import functools

import numpy as np

from ..types import Dim
from .dtypes import NNGRAPH_TO_ONNX
from .registry import OnnxError

EXPORTERS: dict = {}


def exporter(*ops):
    def deco(fn):
        for op in ops:
            EXPORTERS[op] = functools.partial(fn, op) if len(ops) > 1 else fn
        return fn
    return deco


_SIMPLE = {"abs": "Abs", "neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "sin": "Sin", "cos": "Cos",
           "tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "sign": "Sign", "softplus": "Softplus",
           "logical_not": "Not", "stop_gradient": "Identity", "matmul": "MatMul", "where": "Where",
           "equal": "Equal", "less": "Less", "less_equal": "LessOrEqual", "greater": "Greater",
           "greater_equal": "GreaterOrEqual", "logical_and": "And", "logical_or": "Or"}
_ARITH = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max", "minimum": "Min"}


@exporter(*_SIMPLE)
def _simple(op, em, n, ins):
    return em.node(_SIMPLE[op], ins)


def in_result_dtype(em, n, ins) -> list:
    """The operands cast to the result's dtype: nngraph promotes mixed operand types
    (int32 with int64; int / int is float); ONNX takes one type."""
    to = NNGRAPH_TO_ONNX[n.dtype]
    return [i if x.dtype == n.dtype else em.node("Cast", [i], to=to) for i, x in zip(ins, n.inputs)]


@exporter(*_ARITH)
def _arith(op, em, n, ins):
    return em.node(_ARITH[op], in_result_dtype(em, n, ins))


def _scalar(em, value, dtype):
    return em.const(np.asarray(value, np.dtype(dtype)), "k")


@exporter("not_equal")
def _not_equal(em, n, ins):
    return em.node("Not", [em.node("Equal", ins)])


@exporter("rsqrt")
def _rsqrt(em, n, ins):
    return em.node("Reciprocal", [em.node("Sqrt", ins)])


@exporter("log1p")
def _log1p(em, n, ins):
    return em.node("Log", [em.node("Add", [ins[0], _scalar(em, 1, n.dtype)])])


@exporter("expm1")
def _expm1(em, n, ins):
    return em.node("Sub", [em.node("Exp", ins), _scalar(em, 1, n.dtype)])


@exporter("step")
def _step(em, n, ins):
    ge = em.node("GreaterOrEqual", [ins[0], _scalar(em, 0, n.inputs[0].dtype)])
    return em.node("Cast", [ge], to=NNGRAPH_TO_ONNX[n.dtype])


@exporter("cast")
def _cast(em, n, ins):
    return em.node("Cast", ins, to=NNGRAPH_TO_ONNX[n.dtype])


@exporter("sum", "max", "min")
def _reduce(op, em, n, ins):
    axes, keep = list(n.attrs["axes"]), int(n.attrs["keepdims"])
    if not axes:
        return em.node("Identity", ins)
    onnx_op = {"sum": "ReduceSum", "max": "ReduceMax", "min": "ReduceMin"}[op]
    if op == "sum" or em.opset >= 18:
        return em.node(onnx_op, [ins[0], em.const(np.asarray(axes, np.int64), "axes")], keepdims=keep)
    return em.node(onnx_op, ins, axes=axes, keepdims=keep)


@exporter("argmax")
def _argmax(em, n, ins):
    return em.node("ArgMax", ins, axis=int(n.attrs["axes"][0]), keepdims=int(n.attrs["keepdims"]))


@exporter("reshape")
def _reshape(em, n, ins):
    return em.node("Reshape", [ins[0], em.shape(n.shape)])


@exporter("broadcast_to")
def _broadcast(em, n, ins):
    return em.node("Expand", [ins[0], em.shape(n.shape)])


@exporter("transpose")
def _transpose(em, n, ins):
    return em.node("Transpose", ins, perm=list(n.attrs["perm"]))


@exporter("concatenate")
def _concat(em, n, ins):
    return em.node("Concat", ins, axis=int(n.attrs["axis"]))


@exporter("slice")
def _slice(em, n, ins):
    starts, ends, axes, steps = [], [], [], []
    for ax, (b, e, s) in enumerate(n.attrs["slices"]):
        if isinstance(e, Dim) or (b, e, s) == (0, n.inputs[0].shape[ax], 1):
            continue
        starts.append(b), ends.append(e), axes.append(ax), steps.append(s)
    if not axes:
        return em.node("Identity", ins)
    vec = [em.const(np.asarray(v, np.int64), k) for v, k in ((starts, "starts"), (ends, "ends"),
                                                             (axes, "axes"), (steps, "steps"))]
    return em.node("Slice", [ins[0]] + vec)


@exporter("pad")
def _pad(em, n, ins):
    pads = n.attrs["pads"]
    if any(p[2] for p in pads):
        raise OnnxError(f"export: pad with interior padding (built at {n.where}) has no ONNX form")
    vec = [p[0] for p in pads] + [p[1] for p in pads]
    value = _scalar(em, n.attrs["value"], n.dtype)
    return em.node("Pad", [ins[0], em.const(np.asarray(vec, np.int64), "pads"), value], mode="constant")


def _window(attrs) -> dict:
    (t, b), (l, r) = attrs["padding"]
    return {"pads": [t, l, b, r], "strides": list(attrs["stride"])}


@exporter("conv2d")
def _conv(em, n, ins):
    a = n.attrs
    return em.node("Conv", ins, dilations=list(a["dilation"]), group=int(a["groups"]),
                   kernel_shape=[int(k) for k in n.inputs[1].shape[2:]], **_window(a))


@exporter("max_pool2d")
def _max_pool(em, n, ins):
    return em.node("MaxPool", ins, kernel_shape=list(n.attrs["kernel"]), **_window(n.attrs))


@exporter("max_pool2d_select")
def _max_pool_select(em, n, ins):
    """h at each window's first maximum of x: MaxPool's Indices output (x's flat row-major
    positions, storage_order 0; the first of equal maxima, as nngraph), taken within each
    (batch, channel) plane (mod H*W) and gathered from h's plane, so any h exports
    exactly (ng.onnx.load builds h as those positions) and the batch may be dynamic."""
    x = n.inputs[0]
    if x.dtype not in ("float32", "float64") or not all(isinstance(s, int) for s in x.shape[2:]):
        raise OnnxError(f"export: max_pool2d_select of a {x.type} input (built at {n.where}): ONNX MaxPool's "
                        f"Indices output takes float inputs, and its spatial sizes must be known")
    _, where = em.node("MaxPool", [ins[0]], n_out=2, kernel_shape=list(n.attrs["kernel"]), **_window(n.attrs))
    plane = int(x.shape[2]) * int(x.shape[3])
    local = em.node("Mod", [where, _scalar(em, plane, "int64")])
    batch, channels = n.shape[0], n.shape[1]
    picked = em.node("GatherElements", [em.node("Reshape", [ins[1], em.shape((batch, channels, plane))]),
                                        em.node("Reshape", [local, em.shape((batch, channels, -1))])], axis=2)
    return em.node("Reshape", [picked, em.shape(n.shape)])


@exporter("avg_pool2d")
def _avg_pool(em, n, ins):
    return em.node("AveragePool", ins, kernel_shape=list(n.attrs["kernel"]),
                   count_include_pad=int(n.attrs["count_include_pad"]), **_window(n.attrs))


@exporter("numel")
def _numel(em, n, ins):
    sizes = list(n.attrs["sizes"])
    total = em.const(np.asarray([1], np.int64), "one")
    for s in sizes:
        total = em.node("Mul", [total, em.size(s)])
    scalar = em.node("Reshape", [total, em.const(np.asarray([], np.int64), "scalar")])
    return em.node("Cast", [scalar], to=NNGRAPH_TO_ONNX[n.dtype])


@exporter("iota")
def _iota(em, n, ins):
    """A constant over static sizes; over dynamic ones (MaxPool's Indices over a dynamic
    batch) Range over the axis (its size a scalar), reshaped onto the axis and expanded
    to the whole shape."""
    shape, ax = n.attrs["shape"], n.attrs["axis"]
    view = [1] * len(shape)
    if all(isinstance(s, int) for s in shape):
        view[ax] = shape[ax]
        arr = np.broadcast_to(np.arange(shape[ax]).reshape(view), shape)
        return em.const(arr.astype(np.dtype(n.dtype)), "iota")
    view[ax] = -1
    line = em.node("Range", [_scalar(em, 0, "int64"), em.size(shape[ax], scalar=True), _scalar(em, 1, "int64")])
    full = em.node("Expand", [em.node("Reshape", [line, em.const(np.asarray(view, np.int64), "view")]),
                              em.shape(shape)])
    return full if n.dtype == "int64" else em.node("Cast", [full], to=NNGRAPH_TO_ONNX[n.dtype])


@exporter("conv2d_grad_input")
def _conv_transpose(em, n, ins):
    """The input-gradient of conv2d is ONNX's ConvTranspose (ng.conv_transpose2d builds
    it); the rows past the padded result come back as output_padding."""
    a = n.attrs
    kernel = [int(k) for k in n.inputs[1].shape[2:]]
    natural = [(s - 1) * st + d * (k - 1) + 1 - lo - hi for s, st, d, k, (lo, hi) in
               zip(n.inputs[0].shape[2:], a["stride"], a["dilation"], kernel, a["padding"])]
    extra = [int(want) - nat for want, nat in zip(a["input_hw"], natural)]
    return em.node("ConvTranspose", ins, dilations=list(a["dilation"]), group=int(a["groups"]),
                   kernel_shape=kernel, output_padding=extra, **_window(a))


@exporter("take")
def _take(em, n, ins):
    """ONNX Gather reads negative ids from the end, as take does."""
    return em.node("Gather", ins, axis=int(n.attrs["axis"]))
