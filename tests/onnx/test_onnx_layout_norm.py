"""PixelShuffle/PixelUnshuffle (DepthToSpace/SpaceToDepth), one-hot (OneHot), and
InstanceNorm/GroupNorm exported from PyTorch, imported and matched on the CPU target."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import nngraph as ng


class OneHotSum(nn.Module):
    def forward(self, ids):
        return nn.functional.one_hot(ids, 7).sum(1)


def _roundtrip(module, x, opset=17):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(x),), f, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}}, opset_version=opset)
    fn = ng.onnx.load(f.getvalue()).compile(target="cpu")
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(fn(x)[0], want, rtol=1e-5, atol=1e-5)
    return f.getvalue()


def _affine(module):
    torch.manual_seed(0)
    for p in module.parameters():
        with torch.no_grad():
            p.copy_(torch.randn_like(p))
    return module


MODULES = {
    "pixel_shuffle": (lambda: nn.PixelShuffle(2), (2, 8, 3, 5)),
    "pixel_unshuffle": (lambda: nn.PixelUnshuffle(2), (2, 3, 4, 6)),
    "instance_norm": (lambda: _affine(nn.InstanceNorm2d(3, affine=True)), (2, 3, 5, 4)),
    "group_norm": (lambda: _affine(nn.GroupNorm(2, 6)), (2, 6, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_pytorch_layer_imports_and_matches(name):
    make, shape = MODULES[name]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 3 + 1
    _roundtrip(make(), x)


def test_one_hot_of_repeated_indices():
    ids = np.array([[0, 6, 6, 2], [5, 3, 0, 0]], np.int64)
    _roundtrip(OneHotSum(), ids)
