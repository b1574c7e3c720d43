"""ng.conv_transpose2d and ng.upsample2d: values and gradients against PyTorch, finite
differences, every target."""
import numpy as np
import pytest

import nngraph as ng
from helpers import check_grad, compile, rand

CONV_T_CASES = [  # stride, padding, output_padding, dilation, groups, weight shape (IOHW)
    (1, 0, 0, 1, 1, (3, 2, 3, 3)),
    (2, 1, 1, 1, 1, (3, 4, 3, 2)),
    (2, (1, 0), (0, 1), 1, 3, (3, 1, 2, 3)),
    ((3, 1), 2, (2, 0), (1, 2), 1, (3, 2, 3, 2)),
]


def _torch_conv_t(torch, a, b, stride, padding, output_padding, dilation, groups):
    return torch.nn.functional.conv_transpose2d(a, b, None, stride, padding, output_padding, groups, dilation)


@pytest.mark.parametrize("case", range(len(CONV_T_CASES)))
def test_conv_transpose2d_and_its_gradients_match_pytorch(target, case):
    torch = pytest.importorskip("torch")
    stride, padding, out_pad, dil, groups, wshape = CONV_T_CASES[case]
    a, b, up_seed = rand((2, 3, 4, 5), case), rand(wshape, 10 + case), 20 + case
    x, w = ng.placeholder((2, 3, 4, 5), "float64", name="x"), ng.placeholder(wshape, "float64", name="w")
    y = ng.conv_transpose2d(x, w, stride, padding, out_pad, dil, groups)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = _torch_conv_t(torch, ta, tb, stride, padding, out_pad, dil, groups)
    assert tuple(y.shape[1:]) == tuple(ty.shape[1:])
    up = rand(tuple(ty.shape), up_seed)
    gx, gw = ng.grad(ng.sum(y * ng.constant(up)), [x, w])
    got_y, got_gx, got_gw = compile([x, w], [y, gx, gw], target)(a, b)
    (ty * torch.tensor(up)).sum().backward()
    np.testing.assert_allclose(got_y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_gx, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_gw, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_conv_transpose2d_gradient_by_finite_differences(target):
    check_grad(lambda x, w: ng.tanh(ng.conv_transpose2d(x, w, 2, 1, 1)), [rand((1, 2, 3, 3), 1), rand((2, 2, 3, 3), 2)],
               target)


def test_conv_transpose2d_bad_arguments_are_shape_errors():
    x = ng.placeholder((1, 3, 4, 4))
    with pytest.raises(ng.ShapeError, match=r"3 channels but the weights .* expect 2"):
        ng.conv_transpose2d(x, ng.placeholder((2, 3, 3, 3)))
    with pytest.raises(ng.ShapeError, match="output_padding"):
        ng.conv_transpose2d(x, ng.placeholder((3, 3, 3, 3)), stride=2, output_padding=2)


@pytest.mark.parametrize("scale", [2, (1, 3)])
def test_upsample2d_and_its_gradient_match_pytorch(target, scale):
    torch = pytest.importorskip("torch")
    a = rand((2, 3, 4, 5), 3)
    x = ng.placeholder(("N", 3, 4, 5), "float64", name="x")
    y = ng.upsample2d(x, scale)
    ta = torch.tensor(a, requires_grad=True)
    sf = scale if isinstance(scale, tuple) else (scale, scale)
    ty = torch.nn.functional.interpolate(ta, scale_factor=sf, mode="nearest")
    up = rand(tuple(ty.shape), 4)
    u = ng.placeholder(y.shape, "float64", name="u")
    gx = ng.grad(ng.sum(y * u), x)
    got_y, got_g = compile([x, u], [y, gx], target)(a, up)
    (ty * torch.tensor(up)).sum().backward()
    np.testing.assert_array_equal(got_y, ty.detach().numpy())
    np.testing.assert_allclose(got_g, ta.grad.numpy(), rtol=1e-12)


def test_upsample2d_gradient_by_finite_differences(target):
    check_grad(lambda x: ng.upsample2d(x, (2, 3)) ** 2, [rand((1, 2, 2, 3), 5)], target)


def test_upsample2d_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        ng.upsample2d(ng.placeholder((1, 1, 2, 2)), 2, mode="bilinear")
    with pytest.raises(ng.ShapeError, match="4-d"):
        ng.upsample2d(ng.placeholder((2, 2)), 2)
