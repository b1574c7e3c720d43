"""ONNX DFT and STFT as products with cosine and sine matrices worked out at import.

A signal's last axis holds one (real) or two (real, imaginary) components. The
transform along `axis` of length n is x @ W with W[t, k] = exp(-+2 pi i k t / n)
(1/n for the inverse), split into real products: a matrix per component, computed in
float64 from the exact integer phase (k t mod n). The input is cut or zero-padded to
dft_length (rows of W past the signal are dropped); onesided keeps the first
n/2 + 1 frequencies of the forward transform, and the onesided inverse (irfft) reads
those to build a real signal as NumPy's irfft does (the imaginary parts of frequency
0 and n/2 ignored). Cost: one product per component, O(n^2) per transform, fine for
the lengths of audio frames; lengths and settings must be known at import. STFT cuts
frames with one take, weights them with the window and transforms each. The
products run in float64, rounded once to the signal's type.
"""
from __future__ import annotations

import numpy as np

from ..ops import elementwise as ew
from ..ops import gather
from ..ops import movement as mv
from ..ops.contraction import matmul
from ..types import is_float
from .registry import converter


def _phase_matrix(m: int, n: int, k: int, sign: float, scale: float):
    """(cos, sin) matrices [m, k]: entry [t, f] = scale * exp(sign * 2 pi i f t / n), t < m."""
    t, f = np.arange(m)[:, None], np.arange(k)[None, :]
    angle = 2 * np.pi * ((t * f) % n) / n
    return scale * np.cos(angle), scale * sign * np.sin(angle)


def _components(x) -> tuple:
    """(real, imaginary or None) of a [..., 1 or 2] signal, without the last axis."""
    full = [(0, s, 1) for s in x.shape[:-1]]
    real = mv.squeeze(mv.slice_(x, full + [(0, 1, 1)]), -1)
    if x.shape[-1] == 1:
        return real, None
    return real, mv.squeeze(mv.slice_(x, full + [(1, 2, 1)]), -1)


def _along(t, axis: int, fn):
    """fn applied to t with `axis` moved last (fn maps [..., m] to [..., k]), moved back."""
    last = t.ndim - 1
    perm = list(range(t.ndim))
    perm[axis], perm[last] = last, axis
    moved = mv.transpose(t, perm) if axis != last else t
    out = fn(moved)
    return mv.transpose(out, perm) if axis != last else out


def _product(t, matrix: np.ndarray):
    return matmul(t, ew.constant(matrix.astype(np.dtype(t.dtype))))


def dft(ctx, x, axis: int, n: int, inverse: bool, onesided: bool):
    """The ONNX DFT of x [..., 1 or 2] along `axis` (not the last), length n: computed
    in float64 and rounded once to x's type (sums of n products cancel to roundoff
    that float32 arithmetic would not resolve)."""
    out = _dft64(ew.cast(x, "float64") if x.dtype != "float64" else x, axis, n, inverse, onesided)
    return ew.cast(out, x.dtype) if x.dtype != "float64" else out


def _dft64(x, axis: int, n: int, inverse: bool, onesided: bool):
    re, im = _components(x)
    m = min(int(x.shape[axis]), n)
    if int(x.shape[axis]) > n:
        cut = [(0, s, 1) for s in re.shape]
        cut[axis] = (0, n, 1)
        re, im = mv.slice_(re, cut), (mv.slice_(im, cut) if im is not None else None)
    if inverse and onesided:
        return mv.expand_dims(_irfft(re, im, axis, m, n), -1)
    k = n // 2 + 1 if onesided else n
    cos, sin = _phase_matrix(m, n, k, 1.0 if inverse else -1.0, 1.0 / n if inverse else 1.0)
    out_re = _along(re, axis, lambda t: _product(t, cos))
    out_im = _along(re, axis, lambda t: _product(t, sin))
    if im is not None:  # (a + ib)(c + id) = (ac - bd) + i(ad + bc)
        out_re = ew.sub(out_re, _along(im, axis, lambda t: _product(t, sin)))
        out_im = ew.add(out_im, _along(im, axis, lambda t: _product(t, cos)))
    return mv.stack([out_re, out_im], -1)


def _irfft(re, im, axis: int, m: int, n: int):
    """NumPy's irfft of the first m (<= n/2 + 1 used) frequencies: a real signal of length n."""
    used = min(m, n // 2 + 1)
    f = np.arange(used)[:, None]
    twice = np.where((f == 0) | ((n % 2 == 0) & (f == n // 2)), 1.0, 2.0)
    cos, sin = _phase_matrix(used, n, n, 1.0, 1.0 / n)
    cos, sin = cos * twice, -sin * twice

    def first(t):
        return mv.slice_(t, [(0, s, 1) for s in t.shape[:-1]] + [(0, used, 1)])

    out = _along(re, axis, lambda t: _product(first(t), cos))
    if im is not None:
        out = ew.add(out, _along(im, axis, lambda t: _product(first(t), sin)))
    return out


def _signal(ctx, what="input"):
    x = ctx.t(0)
    if not is_float(x.dtype) or x.ndim < 2 or x.shape[-1] not in (1, 2):
        raise ctx.error(f"{what} must be a float tensor whose last axis (1 or 2 components) is static, got {x.type}")
    if not all(isinstance(s, int) for s in x.shape):
        raise ctx.error(f"needs static sizes, got {x.type}")
    return x


@converter("DFT", 17, attrs=("axis", "inverse", "onesided"))
def _dft(ctx):
    x = _signal(ctx)
    if ctx.opset >= 20:
        if ctx.attr("axis") is not None:
            raise ctx.error("attribute axis is an input from opset 20 on")
        axis = int(np.asarray(ctx.const(2, "axis")).reshape(-1)[0]) if ctx.has(2) else -2
    else:
        axis = int(ctx.attr("axis", 1))
    if not -x.ndim <= axis < x.ndim or axis % x.ndim == x.ndim - 1:
        raise ctx.error(f"axis {axis} must name a signal axis of {x.type} (not the last, the components)")
    axis %= x.ndim
    inverse = bool(ctx.refuse_unless("inverse", (0, 1), 0))
    onesided = bool(ctx.refuse_unless("onesided", (0, 1), 0))
    if ctx.has(1):
        n = int(np.asarray(ctx.const(1, "dft_length")).reshape(-1)[0])
    else:
        n = 2 * (int(x.shape[axis]) - 1) if inverse and onesided else int(x.shape[axis])
    if n < 1:
        raise ctx.error(f"the transform length {n} must be positive")
    return dft(ctx, x, axis, n, inverse, onesided)


@converter("STFT", 17, attrs=("onesided",))
def _stft(ctx):
    """signal [batch, length, 1 or 2] -> [batch, frames, bins, 2]."""
    x = _signal(ctx, "signal")
    if x.ndim != 3:
        raise ctx.error(f"signal must be [batch, length, 1 or 2], got {x.type}")
    step = int(np.asarray(ctx.const(1, "frame_step")).reshape(-1)[0])
    window = ctx.t(2) if ctx.has(2) else None
    if ctx.has(3):
        size = int(np.asarray(ctx.const(3, "frame_length")).reshape(-1)[0])
    else:
        size = int(window.shape[0]) if window is not None else int(x.shape[1])
    if window is not None and (window.ndim != 1 or window.shape[0] != size):
        raise ctx.error(f"window {window.type} must be [{size}] (the frame length)")
    frames = (int(x.shape[1]) - size) // step + 1 if step > 0 else 0
    if step < 1 or frames < 1:
        raise ctx.error(f"frame_step {step} and frame_length {size} give no frame of a signal of {x.shape[1]}")
    starts = np.arange(frames)[:, None] * step + np.arange(size)[None, :]
    cut = gather.take(x, starts.astype(np.int64), 1)  # [batch, frames, size, c]
    if window is not None:
        cut = ew.mul(cut, mv.reshape(ew.cast(window, x.dtype), (1, 1, size, 1)))
    onesided = bool(ctx.refuse_unless("onesided", (0, 1), 1))
    return dft(ctx, cut, 2, size, False, onesided)
