"""Movement ops against NumPy: reshape (with -1 and symbolic sizes), transpose,
broadcast_to, concatenate, stack, expand_dims, squeeze, pad, flatten and basic
indexing (ints, strided slices, None, Ellipsis)."""
import numpy as np
import pytest

import nngraph as ng
from helpers import compile, rand, run


def _check(build, a, want, target):
    x = ng.placeholder(a.shape, str(a.dtype))
    y = build(x)
    assert y.shape == want.shape, (y.shape, want.shape)
    np.testing.assert_array_equal(run(y, {x: a}, target), want)


def test_reshape_forms(target):
    a = rand((2, 3, 4), 1)
    for shape in [(6, 4), (24,), (4, -1), (-1,), (2, 1, 12), (1, 24, 1)]:
        _check(lambda x: ng.reshape(x, shape), a, a.reshape(shape), target)
    _check(lambda x: x.reshape(3, 8), a, a.reshape(3, 8), target)
    _check(lambda x: ng.reshape(x, ()), rand((1, 1), 2), rand((1, 1), 2).reshape(()), target)


def test_reshape_with_a_symbolic_batch(target):
    x = ng.placeholder(("N", 3, 4), "float64")
    y = ng.reshape(x, (-1, 12))
    z = ng.flatten(x)
    assert str(y.shape[0]) == "N" and y.shape[1] == 12 and z.shape == y.shape
    fn = compile([x], [y, z], target)
    for n in (1, 3):
        a = rand((n, 3, 4), n)
        for got in fn(a):
            np.testing.assert_array_equal(got, a.reshape(n, 12))


def test_transpose_forms(target):
    a = rand((2, 3, 4), 3)
    for axes in [None, (0, 2, 1), (2, 0, 1), (-1, 0, 1)]:
        _check(lambda x: ng.transpose(x, axes), a, np.transpose(a, axes), target)
    _check(lambda x: x.T, a, a.T, target)
    _check(lambda x: x.transpose(1, 0, 2), a, a.transpose(1, 0, 2), target)
    _check(lambda x: ng.transpose(ng.transpose(x, (1, 2, 0)), (2, 0, 1)), a, a, target)


def test_broadcast_to(target):
    a = rand((3, 1), 4)
    for shape in [(3, 5), (2, 3, 4), (3, 1)]:
        _check(lambda x: ng.broadcast_to(x, shape), a, np.broadcast_to(a, shape), target)
    _check(lambda x: ng.broadcast_to(x, (2, 3)), rand((), 5), np.broadcast_to(rand((), 5), (2, 3)), target)


def test_concatenate_and_stack(target):
    a, b, c = rand((2, 3), 6), rand((4, 3), 7), rand((2, 3), 8)
    x, y, z = (ng.placeholder(v.shape, "float64") for v in (a, b, c))
    outs = [ng.concatenate([x, y], 0), ng.concatenate([x, z], 1), ng.concatenate([x, z, x], -1),
            ng.stack([x, z], 0), ng.stack([x, z], 1), ng.stack([x, z, x], -1), ng.concatenate([x])]
    want = [np.concatenate([a, b], 0), np.concatenate([a, c], 1), np.concatenate([a, c, a], -1),
            np.stack([a, c], 0), np.stack([a, c], 1), np.stack([a, c, a], -1), a]
    for got, w in zip(run(outs, {x: a, y: b, z: c}, target), want):
        np.testing.assert_array_equal(got, w)


def test_expand_dims_squeeze_flatten(target):
    a = rand((3, 1, 4), 9)
    _check(lambda x: ng.expand_dims(x, 0), a, np.expand_dims(a, 0), target)
    _check(lambda x: ng.expand_dims(x, -1), a, np.expand_dims(a, -1), target)
    _check(lambda x: ng.expand_dims(x, (0, 2)), a, np.expand_dims(a, (0, 2)), target)
    _check(lambda x: ng.squeeze(x), a, np.squeeze(a), target)
    _check(lambda x: ng.squeeze(x, 1), a, np.squeeze(a, 1), target)
    _check(lambda x: ng.flatten(x), a, a.reshape(3, 4), target)
    _check(lambda x: ng.flatten(x, 0), a, a.reshape(12), target)


@pytest.mark.parametrize("value", [0.0, -1.5])
def test_pad_like_numpy(value, target):
    a = rand((2, 3), 10)
    for pads in [((1, 2), (0, 3)), ((0, 0), (2, 2)), ((3, 0), (0, 0))]:
        _check(lambda x: ng.pad(x, pads, value), a, np.pad(a, pads, constant_values=value), target)
    _check(lambda x: ng.pad(x, [(2, 1)], value), rand((1,), 11), np.pad(rand((1,), 11), [(2, 1)], constant_values=value),
           target)


def test_indexing(target):
    a = rand((4, 5, 3), 12)
    keys = [1, -1, (slice(1, 3),), (slice(None, None, 2), 2), (Ellipsis, 0), (None, 1, slice(0, 5, 3)),
            (slice(None), None, slice(1, None)), (2, 3, 1), (slice(3, 1),), (slice(-3, None), Ellipsis, slice(None, 2))]
    for k in keys:
        _check(lambda x: x[k], a, a[k], target)


def test_indexing_keeps_a_symbolic_batch(target):
    x = ng.placeholder(("N", 5), "float64")
    y = x[:, 1:4:2]
    fn = compile([x], y, target)
    for n in (1, 3):
        a = rand((n, 5), n)
        np.testing.assert_array_equal(fn(a), a[:, 1:4:2])


def test_movement_errors_name_the_operand():
    x = ng.placeholder((2, 3), name="x")
    with pytest.raises(ng.ShapeError, match=r"reshape.*x: f32\[2,3\]"):
        ng.reshape(x, (4, 2))
    with pytest.raises(ng.ShapeError, match="broadcast"):
        ng.broadcast_to(x, (3, 3))
    with pytest.raises(ng.ShapeError, match="concatenate"):
        ng.concatenate([x, ng.placeholder((2, 4))], 0)
    with pytest.raises(ng.ShapeError, match="squeeze"):
        ng.squeeze(x, 0)
    with pytest.raises(ng.ShapeError, match="out of range"):
        x[2]
    with pytest.raises(ng.ShapeError, match="permutation"):
        ng.transpose(x, (0, 0))
