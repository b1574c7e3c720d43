"""Fold an inference-mode BatchNormalization into the Conv before it, at import:
conv(x, W) * s + t with s = scale / sqrt(var + eps), t = B - mean * s is
conv(x, W * s) + (b * s + t). One convolution instead of a convolution and four
elementwise ops, and the folded weights stay trainable parameters."""
from __future__ import annotations

import numpy as np

from ..api import parameter
from ..node import Parameter, Tensor


def _array(v):
    return v.value if isinstance(v, Parameter) else v


def _known(v) -> bool:
    return isinstance(v, np.ndarray) or isinstance(v, Parameter)


def foldable(conv, bn, values: dict, uses: dict, graph_outputs: set, opset: int) -> bool:
    """Whether `bn` (the only user of conv's output) can be folded into `conv`."""
    if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1 or opset < 7:
        return False
    attrs = {a.name: a for a in bn.attribute}
    if any(k in attrs and attrs[k].i != v for k, v in (("training_mode", 0), ("spatial", 1))):
        return False
    y = conv.output[0]
    if y in graph_outputs or uses.get(y, 0) != 1 or bn.input[0] != y:
        return False
    names = list(conv.input[1:3]) + list(bn.input[1:5])
    if any(n and not _known(values.get(n)) for n in names):
        return False
    w = values[conv.input[1]]
    if not isinstance(_array(w), np.ndarray) or _array(w).dtype.kind != "f":
        return False
    # a weight or bias shared with another node keeps its own value
    return all(uses.get(n, 0) == 1 for n in conv.input[1:3] if n)


def fold(conv, bn, values: dict) -> tuple:
    """(W', b') as parameters where a source was a parameter, else as arrays."""
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    scale, shift, mean, var = (_array(values[n]).astype(np.float64) for n in bn.input[1:5])
    w_src = values[conv.input[1]]
    b_src = values[conv.input[2]] if len(conv.input) > 2 and conv.input[2] else None
    w = _array(w_src)
    s = scale / np.sqrt(var + eps)
    b = _array(b_src).astype(np.float64) if b_src is not None else np.zeros_like(s)
    w_new = (w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    b_new = ((b - mean) * s + shift).astype(w.dtype)
    sources = [values[n] for n in list(conv.input[1:3]) + list(bn.input[1:5]) if n]
    trainable = any(isinstance(v, Parameter) and v.trainable for v in sources)
    if not any(isinstance(v, Tensor) for v in sources):
        return w_new, b_new
    b_name = conv.input[2] if b_src is not None else bn.input[2]
    return (parameter(w_new, name=getattr(w_src, "name", None) or conv.input[1], trainable=trainable),
            parameter(b_new, name=getattr(b_src, "name", None) or b_name, trainable=trainable))
