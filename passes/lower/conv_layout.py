"""The layouts a convolution's products can take (passes/lower/conv.py uses one
per layer, the same for the conv and its two gradients, which share cols and gy):

- ``"batch"`` (whole batch): cols [G*K, N, OH, OW] and gy channel-major
  [O, N, OH, OW], so (N, OH, OW) is one matrix dimension (passes/program.py) and each
  product is one GEMM per group: a single BLAS call for the layer.
- ``"example"`` (per example): cols [N, G*K, OH, OW] and gy as it is (NCHW), the
  products batched over (N, G): one small GEMM per example, each on operands that
  stay in cache.

Which is faster depends on the host's BLAS at the layer's shapes (with OpenBLAS on
an AVX-512 Xeon, LeNet's small products ran faster per example, its 150 x 16 x 6400
filter gradient faster as one call), so the choice is made by a measurement
(runtime/conv_choice.py for target="cpu"), passed to the lowering as
`LoweringContext(conv_choice=...)`; without one the whole-batch layout is used.

- ``"one_image"`` (a static batch of one, one group): the same memory as the whole
  batch's, with the unit batch and group axes left out of the products, so the
  forward product is [Og, OH, OW] and its epilogue's first loop axis is the output
  channel: the backend splits it across threads like any loop kernel (with the unit
  axes first, the epilogue of every ResNet-50 layer ran on one thread). Used for
  every such layer whatever the measurement chose: at one example and one group the
  two layouts are the same products.

- ``"one_image_t"`` (one image, one group, a graph with only the forward product at
  this geometry, chosen by measurement on target="cpu": runtime/conv_choice.py): the
  product pixel-major, [OH*OW, Og] = colsᵀ @ wᵀ, its epilogue writing NCHW y. Why:
  a BLAS vectorises its output's leading column-major dimension, which for the
  channel-major product is the OH*OW output points: at 7x7 (49 points) an AVX-512
  micro-kernel of 16-float columns runs 4 vectors for 49 values. Pixel-major, that
  dimension is the channels (512, 2048): MKL on an AVX-512 Xeon ran ResNet-50's
  512 x 4608 x 49 product in 1762 us instead of 2101.

- ``"one_image_direct"`` (one image, one group, float32, a window of more than one
  point or a 1x1 one of stride 1 without padding, a graph with only the forward
  product at this geometry, chosen by measurement on target="cpu"): no im2col; the
  product [Og, OH, OW] is computed directly from a phase-split, zero-padded copy of x
  (x itself for the 1x1 window: passes/direct_window.py in_place_window,
  codegen/llvm/conv_direct.py), its epilogue as the channel-major product's or in
  the kernel's registers (codegen/llvm/conv_epilogue.py).

- ``"taps"`` (any batch, chosen by measurement on target="cpu"): no columns and no
  products: the forward product and both gradients as loop kernels over the windows
  of KW shifted copies of x's rows (passes/lower/conv_taps.py), for thin layers
  (few input or output channels) that a BLAS runs far below its rate.

In all (the layouts with columns), row g*K + k of cols is c*KH*KW + tap (c = g*Cg + k // (KH*KW)), and a point
of a product's column dimension is (n, oh, ow) in the layout's own order.
"""
from __future__ import annotations

LAYOUTS = ("batch", "example", "taps")
ONE_IMAGE_LAYOUTS = ("one_image", "one_image_t", "one_image_direct")


class _Layout:
    """What both layouts share; a subclass names its axis orders."""
    name = ""
    product_order: tuple = ()       # the forward product's axes, by name
    col2im_order: tuple = ()        # dx's axes in col2im's loop order, outer to inner

    def __init__(self, geo):
        self.geo = geo

    def matrix(self, buf_rows):
        """A product operand's view shape: [batch..., rows, *columns]."""
        return self.batch() + (buf_rows,) + self.cols_axes

    def nchw_index(self, body):
        """The NCHW index of a point of the forward product (its axes: product_order)."""
        at = {name: body.idx(k) for k, name in enumerate(self.product_order)}
        c = body.iadd(body.imul(at["g"], body.iconst(self.geo["Og"])), at["o"])
        return (at["n"], c, at["oh"], at["ow"])


class WholeBatch(_Layout):
    name = "batch"
    product_order = ("g", "o", "n", "oh", "ow")
    col2im_order = (1, 0, 2, 3)     # dx's axes outer to inner: c, n, h, w

    def __init__(self, geo):
        super().__init__(geo)
        self.cols_axes = (geo["N"], geo["OH"], geo["OW"])

    def cols_shape(self):
        g = self.geo
        return (g["G"] * g["K"], g["N"], g["OH"], g["OW"])

    def cols_index(self, row, n, oh, ow):
        """The cols (or dcols) element of window row `row` at output point (n, oh, ow)."""
        return (row, n, oh, ow)

    def im2col_axes(self):
        """(loop domain, which of its axes are (row, n, oh, ow)) of the im2col kernel:
        its first axis is the one the backend splits across threads."""
        return self.cols_shape(), (0, 1, 2, 3)

    def batch(self):
        return (self.geo["G"],)

    def writes_nchw(self) -> bool:
        """Is the forward product [batch, Og, columns] laid out as NCHW y itself?"""
        n = self.geo["N"]
        return isinstance(n, int) and n == 1

    def gy_is_nchw(self) -> bool:
        """Can the products read gy as it is (else a channel-major copy)?"""
        return self.writes_nchw()


class PerExample(_Layout):
    name = "example"
    product_order = ("n", "g", "o", "oh", "ow")
    col2im_order = (0, 1, 2, 3)

    def __init__(self, geo):
        super().__init__(geo)
        self.cols_axes = (geo["OH"], geo["OW"])

    def cols_shape(self):
        g = self.geo
        return (g["N"], g["G"] * g["K"], g["OH"], g["OW"])

    def cols_index(self, row, n, oh, ow):
        return (n, row, oh, ow)

    def im2col_axes(self):
        return self.cols_shape(), (1, 0, 2, 3)

    def batch(self):
        return (self.geo["N"], self.geo["G"])

    def writes_nchw(self) -> bool:
        return True

    def gy_is_nchw(self) -> bool:
        return True


class OneImage(WholeBatch):
    name = "one_image"
    product_order = ("o", "oh", "ow")

    def __init__(self, geo):
        super().__init__(geo)
        self.cols_axes = (geo["OH"], geo["OW"])

    def nchw_index(self, body):
        at = {name: body.idx(k) for k, name in enumerate(self.product_order)}
        zero = body.iconst(0)
        return (zero, at["o"], at["oh"], at["ow"])

    def batch(self):
        return ()


class OneImagePixelMajor(OneImage):
    """The one-image product transposed: [OH*OW, Og] (see "one_image_t" above)."""
    name = "one_image_t"

    def __init__(self, geo):
        super().__init__(geo)
        self.cols_axes = (geo["OH"] * geo["OW"],)

    def nchw_index(self, body):
        """The NCHW index of the product's point (p, o): p = oh * OW + ow."""
        p, o = body.idx(0), body.idx(1)
        width = body.iconst(self.geo["OW"])
        return (body.iconst(0), o, body.ifloordiv(p, width), body.imod(p, width))


class OneImageDirect(OneImage):
    """The one-image product computed directly from a phase-split copy of x, or from
    x itself in place ("one_image_direct" above; passes/direct_window.py): the
    product's points are NCHW y's, as OneImage's."""
    name = "one_image_direct"


class Taps:
    """No columns and no products: loop kernels over the windows of KW shifted copies
    of x's rows ("taps" above; passes/lower/conv_taps.py)."""
    name = "taps"

    def __init__(self, geo):
        self.geo = geo


def is_one_image(geo) -> bool:
    """One example (a static batch of one) and one group: the OneImage layout."""
    return isinstance(geo["N"], int) and geo["N"] == 1 and geo["G"] == 1


def make_layout(name: str, geo):
    if is_one_image(geo):
        return {"one_image_t": OneImagePixelMajor, "one_image_direct": OneImageDirect}.get(name, OneImage)(geo)
    if name == "batch":
        return WholeBatch(geo)
    if name == "example":
        return PerExample(geo)
    if name == "taps":
        return Taps(geo)
    raise ValueError(f"conv layout must be one of {LAYOUTS}, got {name!r}")
