"""The user-facing graph builders: placeholders, parameters, and Python operators
on tensors. The functions themselves live beside their op definitions."""
from __future__ import annotations

import numpy as np

from .node import Parameter, Tensor, make
from .ops import advanced_index as ai
from .ops import contraction as ct
from .ops import elementwise as ew
from .ops import movement as mv
from .ops import reduce as rd
from .source_location import user_location
from .types import as_dtype, as_size


def placeholder(shape, dtype="float32", name=None) -> Tensor:
    """A graph input. Shape entries: ints, None (a fresh dynamic size) or a name
    (placeholders sharing a name share that size)."""
    shape = tuple(as_size(s) for s in shape)
    return make("placeholder", (), name=name, shape=shape, dtype=as_dtype(dtype))


def parameter(value, name=None, trainable=True) -> Parameter:
    """State that lives across calls; read or set it with `p.value`."""
    was_array = isinstance(value, np.ndarray)
    value = np.asarray(value)
    if value.dtype == np.float64 and not was_array:
        value = value.astype(np.float32)  # Python floats and lists default to float32
    elif value.dtype.kind in "iu" and not was_array:
        value = value.astype(np.int32)
    as_dtype(value.dtype)  # raises for unsupported dtypes
    return Parameter(value, name, trainable, user_location())


def constant(value, dtype=None) -> Tensor:
    return ew.constant(value, dtype)


# ----------------------------------------------------------------------------- operators


def _r(fn):
    return lambda self, other: fn(other, self)


Tensor.__add__ = lambda a, b: ew.add(a, b)
Tensor.__radd__ = _r(ew.add)
Tensor.__sub__ = lambda a, b: ew.sub(a, b)
Tensor.__rsub__ = _r(ew.sub)
Tensor.__mul__ = lambda a, b: ew.mul(a, b)
Tensor.__rmul__ = _r(ew.mul)
Tensor.__truediv__ = lambda a, b: ew.div(a, b)
Tensor.__rtruediv__ = _r(ew.div)
Tensor.__pow__ = lambda a, b: ew.pow(a, b)
Tensor.__rpow__ = _r(ew.pow)
Tensor.__mod__ = lambda a, b: ew.mod(a, b)
Tensor.__rmod__ = _r(ew.mod)
Tensor.__matmul__ = lambda a, b: ct.matmul(a, b)
Tensor.__rmatmul__ = _r(ct.matmul)
Tensor.__neg__ = lambda a: ew.neg(a)
Tensor.__pos__ = lambda a: a
Tensor.__abs__ = lambda a: ew.abs(a)
Tensor.__lt__ = lambda a, b: ew.less(a, b)
Tensor.__le__ = lambda a, b: ew.less_equal(a, b)
Tensor.__gt__ = lambda a, b: ew.greater(a, b)
Tensor.__ge__ = lambda a, b: ew.greater_equal(a, b)


def _bool_or_bits(logical, bitwise):
    """`&`, `|`, `^` as NumPy has them: logical on bool tensors, bitwise on integers."""
    def op(a, b):
        a, b = ew._coerce(a, b)
        return (logical if a.dtype == "bool" and b.dtype == "bool" else bitwise)(a, b)
    return op


Tensor.__invert__ = lambda a: ew.logical_not(a) if a.dtype == "bool" else ew.bitwise_not(a)
Tensor.__and__ = _bool_or_bits(ew.logical_and, ew.bitwise_and)
Tensor.__rand__ = _r(Tensor.__and__)
Tensor.__or__ = _bool_or_bits(ew.logical_or, ew.bitwise_or)
Tensor.__ror__ = _r(Tensor.__or__)
Tensor.__xor__ = _bool_or_bits(ew.not_equal, ew.bitwise_xor)
Tensor.__rxor__ = _r(Tensor.__xor__)
Tensor.__getitem__ = lambda a, k: (ai.advanced_getitem(a, k if isinstance(k, tuple) else (k,))
                                   if ai.is_advanced(k if isinstance(k, tuple) else (k,)) else mv.getitem(a, k))
Tensor.T = property(lambda a: mv.transpose(a))
Tensor.reshape = lambda a, *shape: mv.reshape(a, *shape)
Tensor.transpose = lambda a, *axes: mv.transpose(a, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))
Tensor.sum = lambda a, axis=None, keepdims=False: rd.sum(a, axis, keepdims)
Tensor.mean = lambda a, axis=None, keepdims=False: rd.mean(a, axis, keepdims)
Tensor.max = lambda a, axis=None, keepdims=False: rd.max(a, axis, keepdims)
Tensor.min = lambda a, axis=None, keepdims=False: rd.min(a, axis, keepdims)
Tensor.astype = lambda a, dtype: ew.cast(a, dtype)
