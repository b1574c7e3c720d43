"""The direct convolution's input (a MatmulKernel's `window`, passes/program.py): its
geometry, DirectWindow, and the rules of its phase-split, zero-padded copy of x,
which codegen/llvm/conv_direct.py's kernel reads in place of im2col's window matrix
(passes/lower/conv_direct.py writes it).

A stride of sh x sw is made a stride of one by splitting the zero-padded input into
sh*sw phase planes: plane (a, b) of channel c holds padded rows a, a+sh, ... and
columns b, b+sw, ..., Hq x Wq of them. Output point (oh, ow) at tap (kh, kw) then
reads plane ((kh*dh) % sh, (kw*dw) % sw) at (oh + (kh*dh)//sh, ow + (kw*dw)//sw):
with q = oh*Wq + ow, the flattened plane's element q + tap_offset(kh, kw).
Consecutive output points read consecutive inputs, so one vector load serves as
many points (the last Wq - OW columns of each flattened output row are computed
and dropped). The copy is KH*KW/(sh*sw) times smaller than im2col's matrix.

`window_columns` is the rule's one NumPy statement (im2col's matrix from the
copy): the program interpreter's semantics of a MatmulKernel with a window, and
what the tests check the generated kernel against.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# the widest float32 vector of any target the CPU backend generates (AVX-512: 16
# lanes): the copy's slack covers a kernel's loads at any narrower width too
MAX_LANES = 16


@dataclass(frozen=True)
class DirectWindow:
    """A one-image convolution's window over its phase-split input (see above)."""
    C: int
    KH: int
    KW: int
    sh: int
    sw: int
    dh: int
    dw: int
    OH: int
    OW: int
    lanes: int = MAX_LANES  # the widest vector a kernel loads: the copy's slack
    in_place: bool = False  # x itself, no copy (a 1x1 window of stride 1 without padding: in_place_window)

    @property
    def Hq(self) -> int:
        return self.OH + (self.KH - 1) * self.dh // self.sh

    @property
    def Wq(self) -> int:
        return self.OW + (self.KW - 1) * self.dw // self.sw

    def plane(self) -> int:
        return self.Hq * self.Wq

    def channel_stride(self) -> int:
        return self.sh * self.sw * self.plane()

    def flat_points(self) -> int:
        """Flattened output points (OH rows of Wq, the last Wq - OW of each dropped)."""
        return self.OH * self.Wq

    def tap_offsets(self) -> list:
        """Per tap (kh, kw) in OIHW order: its offset in a channel's phase planes."""
        out = []
        for kh in range(self.KH):
            a, di = divmod(kh * self.dh, self.sh)[::-1]
            for kw in range(self.KW):
                bb, dj = divmod(kw * self.dw, self.sw)[::-1]
                out.append((a * self.sw + bb) * self.plane() + di * self.Wq + dj)
        return out

    def elements(self) -> int:
        """The copy's length: every channel's planes, and the slack that the last
        channel's vector loads past its flattened points read (values never stored);
        in place, x's elements only (the kernel masks the loads that would pass them)."""
        if self.in_place:
            return self.C * self.channel_stride()
        reach = -(-self.flat_points() // self.lanes) * self.lanes + max(self.tap_offsets())
        return self.C * self.channel_stride() + max(0, reach - self.channel_stride())


def window_of(geo: dict, lanes: int = MAX_LANES) -> DirectWindow:
    """The window of a layer of geometry `geo` (passes/lower/conv.py's dict)."""
    return DirectWindow(geo["Cg"], geo["KH"], geo["KW"], geo["sh"], geo["sw"], geo["dh"], geo["dw"],
                        geo["OH"], geo["OW"], lanes, in_place=in_place_window(geo))


def in_place_window(geo: dict) -> bool:
    """Is each image's window matrix x itself (a 1x1 filter, stride 1, no padding)? Then
    neither im2col nor the direct convolution's copy is needed: the copy's planes
    would be x's channels, as they are."""
    return (geo["KH"] == geo["KW"] == 1 and geo["sh"] == geo["sw"] == 1 and geo["pt"] == geo["pl"] == 0
            and (geo["H"], geo["W"]) == (geo["OH"], geo["OW"]))


def direct_eligible(geo: dict, dtype: str) -> bool:
    """Can the layer be computed directly: float32, one image (a static batch of one),
    one group, a window of more than one point or read in place (in_place_window)?
    (A 1x1 layer of stride 2 reads C inputs per output point and as many weights from
    a copy, and ResNet-50's ran 1.4-9x slower directly than as the BLAS's GEMM, which
    blocks its operands for the caches; a 1x1 layer of stride 1 needs no copy and
    carries its epilogue in registers, which the BLAS's product cannot:
    runtime/conv_choice.py times both with it.)"""
    return (dtype == "float32" and isinstance(geo["N"], int) and geo["N"] == 1 and geo["G"] == 1
            and (geo["KH"] * geo["KW"] > 1 or in_place_window(geo)))


def phase_split(x: np.ndarray, win: DirectWindow, pt: int, pl: int) -> np.ndarray:
    """NumPy: the copy of one image x [C, H, W] (zero slack), as the loop kernel writes it."""
    out = np.zeros(win.elements(), x.dtype)
    planes = out[:win.C * win.channel_stride()].reshape(win.C, win.sh, win.sw, win.Hq, win.Wq)
    C, H, W = x.shape
    for a in range(win.sh):
        for bb in range(win.sw):
            for i in range(win.Hq):
                h = i * win.sh + a - pt
                if 0 <= h < H:
                    cols = np.arange(win.Wq) * win.sw + bb - pl
                    ok = (cols >= 0) & (cols < W)
                    planes[:, a, bb, i, ok] = x[:, h, cols[ok]]
    return out


def window_columns(copy: np.ndarray, win: DirectWindow) -> np.ndarray:
    """im2col's matrix [C*KH*KW, OH, OW] read from the copy by the tap rule above."""
    q = (np.arange(win.OH)[:, None] * win.Wq + np.arange(win.OW)[None, :]).reshape(-1)
    rows = []
    for c in range(win.C):
        for off in win.tap_offsets():
            rows.append(copy[c * win.channel_stride() + off + q])
    return np.stack(rows).reshape(len(rows), win.OH, win.OW)
