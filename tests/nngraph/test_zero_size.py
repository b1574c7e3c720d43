"""Zero-size tensors through the ops that mask their loads (concatenate, pad) and the
ones that slice to nothing, on every target: the ONNX CausalConvWithState with kernel
size 1 concatenates a [N, C, 0] zero pad to its input and slices a [N, C, 0] state out,
which crashed the Program interpreter (a masked load from a buffer with no element)."""
import numpy as np
import pytest

import nngraph as ng
from helpers import check_grad, rand, run

PIECES = {
    "empty_first": [(2, 0), (2, 3)],
    "empty_middle": [(2, 3), (2, 0), (2, 2)],
    "empty_last": [(2, 3), (2, 0)],
}


@pytest.mark.parametrize("layout", sorted(PIECES))
def test_concatenate_with_a_zero_size_piece(layout, target):
    arrays = [rand(s, k) for k, s in enumerate(PIECES[layout])]
    xs = [ng.placeholder(a.shape, "float64") for a in arrays]
    y = ng.concatenate(xs, 1) * 2.0
    np.testing.assert_allclose(run(y, dict(zip(xs, arrays)), target), np.concatenate(arrays, 1) * 2.0)


def test_causal_pad_of_kernel_size_one_and_its_empty_state(target):
    """The CausalConvWithState pattern: concat(zeros[N, C, K-1], x) and its last K-1 steps."""
    a = rand((2, 4, 8), 3)
    x = ng.placeholder(a.shape, "float64")
    padded = ng.concatenate([ng.constant(np.zeros((2, 4, 0))), x], 2)
    out, state = run([ng.tanh(padded), padded[:, :, 8:]], {x: a}, target)
    np.testing.assert_allclose(out, np.tanh(a), rtol=1e-12)
    assert state.shape == (2, 4, 0)


def test_pad_of_a_zero_size_axis_is_all_fill(target):
    a = np.zeros((2, 0))
    x = ng.placeholder(a.shape, "float64")
    out = run(ng.pad(x, ((0, 0), (2, 1)), 1.5) + 1.0, {x: a}, target)
    np.testing.assert_array_equal(out, np.full((2, 3), 2.5))


def test_gradient_through_a_concatenation_with_a_zero_size_piece(target):
    check_grad(lambda a, b: ng.concatenate([a, b], 1) * ng.concatenate([b, a], 1),
               [np.zeros((3, 0)), rand((3, 2), 5)], target=target)
