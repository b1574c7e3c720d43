"""max_pool2d_select with an integer h: each window's first maximum of x picks h's
value there (ONNX MaxPool's Indices are h = the flat positions), against a NumPy loop
on every target; a float h keeps its gradient (the transpose of max_pool2d_grad)."""
import numpy as np
import pytest

import nngraph as ng
from nngraph.ops.pool import max_pool2d_select
from helpers import check_grad, rand, run


def _first_max_positions(x, k, s, p):
    n, c, hh, ww = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    oh, ow = (hh + 2 * p - k) // s + 1, (ww + 2 * p - k) // s + 1
    out = np.zeros((n, c, oh, ow), np.int64)
    for i, j, a, b in np.ndindex(n, c, oh, ow):
        win = xp[i, j, a * s:a * s + k, b * s:b * s + k]
        r, q = np.unravel_index(np.argmax(win), win.shape)
        out[i, j, a, b] = ((i * c + j) * hh + a * s + r - p) * ww + b * s + q - p
    return out


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_select_of_int64_positions_is_the_argmax_index(k, s, p, target):
    a = rand((2, 3, 5, 6), 4).astype(np.float32)
    a.reshape(-1)[::5] = 1.0           # ties: the first maximum in row-major order wins
    x = ng.placeholder(("N", 3, 5, 6), "float32")
    pos = ng.placeholder(("N", 3, 5, 6), "int64")
    flat = np.arange(a.size, dtype=np.int64).reshape(a.shape)
    got = run(max_pool2d_select(x, pos, k, s, p), {x: a, pos: flat}, target)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _first_max_positions(a, k, s, p))


def test_select_of_a_float_h_keeps_its_gradient(target):
    x = rand((1, 2, 4, 4), 2)
    check_grad(lambda h: max_pool2d_select(ng.constant(x), h, 2, 2, 0), [rand((1, 2, 4, 4), 3)], target=target)


def test_select_refuses_an_h_of_another_shape():
    with pytest.raises(ng.ShapeError, match="h must have x's shape"):
        max_pool2d_select(ng.placeholder((1, 1, 4, 4)), ng.placeholder((1, 1, 4, 3), "int64"), 2)
