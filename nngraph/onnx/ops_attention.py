"""ONNX Attention (opset 23+): scaled dot-product attention with multi-, grouped- and
multi-query heads, a boolean or additive mask, causal masking, soft capping and a
key/value cache (in the op, or external with nonpad_kv_seqlen) and sliding windows,
composed from matmul, softmax pieces and movement ops."""
from __future__ import annotations

import numpy as np

from ..ops import elementwise as ew
from ..ops import movement as mv
from ..ops import reduce as rd
from .registry import converter


def _heads(ctx, t, heads_attr: str):
    """[B, H, S, D] from a 4-d input or a 3-d [B, S, H*D] one with `heads_attr` heads."""
    if t.ndim == 4:
        return t
    heads = ctx.attr(heads_attr)
    if t.ndim != 3 or heads is None:
        raise ctx.error(f"a {t.ndim}-d input {t.type} needs 4 axes, or 3 with attribute {heads_attr}")
    b, s, hd = t.shape
    return mv.transpose(mv.reshape(t, (b, s, int(heads), hd // int(heads))), (0, 2, 1, 3))


def _repeat_heads(t, groups: int):
    """[B, Hkv, L, D] -> [B, Hkv * groups, L, D], each kv head serving `groups` query heads."""
    if groups == 1:
        return t
    b, h, s, d = t.shape
    wide = mv.broadcast_to(mv.expand_dims(t, 2), (b, h, groups, s, d))
    return mv.reshape(wide, (b, h * groups, s, d))


def _bias(ctx, scores, past: int):
    """The additive bias of attn_mask (bool: -inf where False), is_causal (bottom-right
    aligned) and the sliding window (left/right_window_size around the query's position)."""
    bias = None
    neg = np.asarray(-np.inf, np.dtype(scores.dtype))
    if ctx.has(3):
        mask = _mask_over_keys(ctx, ctx.t(3), scores.shape[-1])
        bias = ew.where(mask, np.asarray(0, np.dtype(scores.dtype)), neg) \
            if mask.dtype == "bool" else mask
    left, right = int(ctx.attr("left_window_size", -1)), int(ctx.attr("right_window_size", -1))
    if ctx.has(6):
        nonpad = _nonpad_bias(ctx, scores, left, right)
        return nonpad if bias is None else ew.add(bias, nonpad)
    if ctx.attr("is_causal", 0) or left >= 0 or right >= 0:
        sq, sk = scores.shape[-2:]
        pos, key = np.arange(sq)[:, None] + past, np.arange(sk)[None, :]
        allowed = np.ones((sq, sk), bool)
        if ctx.attr("is_causal", 0):
            allowed &= key <= pos
        if left >= 0:
            allowed &= key >= pos - left
        if right >= 0:
            allowed &= key <= pos + right
        causal = ew.constant(np.where(allowed, 0.0, -np.inf).astype(np.dtype(scores.dtype)))
        bias = causal if bias is None else ew.add(bias, causal)
    return bias


def _mask_over_keys(ctx, mask, keys):
    """attn_mask over all `keys`: a last axis shorter than the keys (a mask made for the
    keys before padding or a cache) is padded at the end with False / -inf, as ONNX's
    reference does (the padded keys are masked out); a longer one is refused by name."""
    have = mask.shape[-1]
    if not isinstance(have, int) or not isinstance(keys, int) or have in (1, keys):
        return mask
    if have > keys:
        raise ctx.error(f"attn_mask {mask.type} covers {have} key positions, more than the {keys} keys")
    fill = False if mask.dtype == "bool" else -np.inf
    return mv.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, keys - have)], fill)


def _nonpad_bias(ctx, scores, left: int, right: int):
    """With nonpad_kv_seqlen (an external cache): per batch, keys from nonpad[b] on are
    padding, and the query block sits at offset nonpad[b] - Sq (causal, windows)."""
    b, _, sq, sk = scores.shape
    lens = ew.cast(mv.reshape(ctx.t(6), (b, 1, 1, 1)), "int64")
    key = ew.iota((1, 1, 1, sk), 3, "int64")
    pos = ew.add(ew.iota((1, 1, sq, 1), 2, "int64"), ew.sub(lens, np.asarray(sq, np.int64)))
    allowed = ew.less(key, lens)
    if ctx.attr("is_causal", 0):
        allowed = ew.logical_and(allowed, ew.less_equal(key, pos))
    if left >= 0:
        allowed = ew.logical_and(allowed, ew.greater_equal(key, ew.sub(pos, np.asarray(left, np.int64))))
    if right >= 0:
        allowed = ew.logical_and(allowed, ew.less_equal(key, ew.add(pos, np.asarray(right, np.int64))))
    dt = np.dtype(scores.dtype)
    return ew.where(allowed, np.asarray(0, dt), np.asarray(-np.inf, dt))


def _guarded_softmax(x):
    """softmax over the last axis; a row with no allowed key (all -inf) gives zeros, not NaN."""
    m = rd.max(x, -1, keepdims=True)
    finite = ew.greater(m, np.asarray(-np.inf, np.dtype(x.dtype)))
    safe = ew.where(finite, ew.stop_gradient(m), ew.zeros_like(m))
    e = ew.exp(ew.sub(x, safe))
    s = rd.sum(e, -1, keepdims=True)
    return ew.where(finite, ew.div(e, ew.where(finite, s, ew.ones_like(s))), ew.zeros_like(e))


@converter("Attention", 23, attrs=("is_causal", "kv_num_heads", "q_num_heads", "qk_matmul_output_mode", "scale",
                                   "softcap", "softmax_precision", "left_window_size", "right_window_size"))
def _attention(ctx):
    q3 = ctx.t(0).ndim == 3
    q, k, v = _heads(ctx, ctx.t(0), "q_num_heads"), _heads(ctx, ctx.t(1), "kv_num_heads"), \
        _heads(ctx, ctx.t(2), "kv_num_heads")
    precision = ctx.attr("softmax_precision")
    work = {None: q.dtype, 1: "float32", 11: "float64"}.get(precision)
    if work is None:
        raise ctx.error(f"softmax_precision={precision} is not supported (FLOAT or DOUBLE only)")
    past = 0
    if ctx.has(4):
        past = ctx.t(4).shape[2]
        k, v = mv.concatenate([ctx.t(4), k], 2), mv.concatenate([ctx.t(5), v], 2)
    present_k, present_v = k, v
    groups = q.shape[1] // k.shape[1]
    k, v = _repeat_heads(k, groups), _repeat_heads(v, groups)
    scale = ctx.attr("scale")
    scale = float(scale) if scale is not None else 1.0 / float(np.sqrt(q.shape[-1]))
    raw = ew.mul(q @ mv.transpose(k, (0, 1, 3, 2)), scale)
    capped = raw
    cap = float(ctx.attr("softcap", 0.0))
    if cap > 0:
        capped = ew.mul(ew.tanh(ew.div(raw, cap)), cap)
    bias = _bias(ctx, capped, past)
    biased = capped if bias is None else ew.add(capped, bias)
    probs = ew.cast(_guarded_softmax(ew.cast(biased, work)), q.dtype)
    y = probs @ v
    if q3:
        b, h, s, d = y.shape
        y = mv.reshape(mv.transpose(y, (0, 2, 1, 3)), (b, s, h * d))
    mode = ctx.refuse_unless("qk_matmul_output_mode", (0, 1, 2, 3), 0)
    return [y, present_k, present_v, [raw, capped, biased, probs][mode]][:max(ctx.n_outputs, 1)]
