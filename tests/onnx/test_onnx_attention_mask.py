"""ONNX Attention with an attn_mask shorter than the keys (the mask of the keys before
padding or a cache): the missing positions are masked out, as ONNX's reference pads
the mask with False / -inf; against that reference on every target. A mask longer than
the keys is refused by name."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import nngraph as ng
from nngraph.onnx import OnnxError


def _model(mask_type, mask_keys, nonpad: bool):
    inputs = ["Q", "K", "V", "attn_mask"] + (["", "", "nonpad_kv_seqlen"] if nonpad else [])
    node = helper.make_node("Attention", inputs, ["Y"], name="attn")
    vis = [helper.make_tensor_value_info("Q", TensorProto.FLOAT, [2, 3, 4, 8]),
           helper.make_tensor_value_info("K", TensorProto.FLOAT, [2, 3, 6, 8]),
           helper.make_tensor_value_info("V", TensorProto.FLOAT, [2, 3, 6, 5]),
           helper.make_tensor_value_info("attn_mask", mask_type, [2, 1, 4, mask_keys])]
    if nonpad:
        vis.append(helper.make_tensor_value_info("nonpad_kv_seqlen", TensorProto.INT64, [2]))
    graph = helper.make_graph([node], "g", vis, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 3, 4, 5])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24)])


@pytest.mark.parametrize("boolean", [True, False])
@pytest.mark.parametrize("nonpad", [True, False])
def test_a_mask_shorter_than_the_keys_masks_the_rest_out(boolean, nonpad, target):
    model = _model(TensorProto.BOOL if boolean else TensorProto.FLOAT, 4, nonpad)
    rng = np.random.default_rng(3)
    feeds = {"Q": rng.standard_normal((2, 3, 4, 8)).astype(np.float32),
             "K": rng.standard_normal((2, 3, 6, 8)).astype(np.float32),
             "V": rng.standard_normal((2, 3, 6, 5)).astype(np.float32)}
    mask = rng.random((2, 1, 4, 4)) > 0.3
    mask[..., 0] = True      # every query keeps a key
    feeds["attn_mask"] = mask if boolean else rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    if nonpad:
        feeds["nonpad_kv_seqlen"] = np.array([4, 3], np.int64)
    fn = ng.onnx.load(model).compile(target="reference" if target == "oracle" else target)
    (got,) = fn(*feeds.values())
    (want,) = ReferenceEvaluator(model).run(None, feeds)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_a_mask_longer_than_the_keys_is_refused_by_name():
    with pytest.raises(OnnxError, match=r"node 'attn' \(Attention, opset 24\): attn_mask .* covers 7 key positions"):
        ng.onnx.load(_model(TensorProto.BOOL, 7, False))
