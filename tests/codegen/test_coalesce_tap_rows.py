"""passes/coalesce.py: two loop axes (h, w) read as index (h + s, w) of a buffer with
more rows than the loop has (a window's tap rows, s another loop's index or a
constant) merge into one axis of h * w, and the results stay those of the loops."""
import numpy as np
import pytest

from passes.program import LoopKernel, Stage, Store
from progbuild import Dim, ProgBuilder

N = Dim("N")


def _tap_rows_program(shift):
    """y[n, k, h, w] = x[n, row, w] over h < 4, w < 5, k < 3, x with 6 rows: row = h + k
    ("axis"), h + 2 ("const"), h ("plain"), or h + w ("w": not a tap row)."""
    pb = ProgBuilder()
    x = pb.buf("x", "float32", (N, 6, 5), "input")
    y = pb.buf("y", "float32", (N, 3, 4, 5), "output")
    b = pb.body()
    n, k, h, w = (b.idx(a) for a in range(4))

    def const(v):
        return b("const", dtype="int64", value=v)
    row = {"axis": lambda: b("add", h, k, dtype="int64"), "const": lambda: b("add", h, const(2), dtype="int64"),
           "plain": lambda: h, "w": lambda: b("add", h, b("mod", w, const(3), dtype="int64"), dtype="int64")}[shift]()
    v = b.load(x, n, row, w)
    pb.kernel(LoopKernel("taps", (N, 3, 4, 5), [Stage((), b.ins, (), [Store(y, (n, k, h, w), v)])]))
    return pb


def _want(x, shift):
    k, h, w = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing="ij")
    row = {"axis": h + k, "const": h + 2 + 0 * k, "plain": h + 0 * k, "w": h + w % 3}[shift]
    return x[:, row, w]


@pytest.mark.parametrize("shift", ["axis", "const", "plain", "w"])
def test_tap_rows_merge_and_give_the_loops_results(shift):
    from passes.coalesce import coalesce
    pb = _tap_rows_program(shift)
    kern = pb.schedule[0]
    outer, _ = coalesce(pb.program(), kern.outer, kern.stages)
    assert (outer == (N, 3, 20)) == (shift != "w")
    x = np.random.default_rng(1).standard_normal((2, 6, 5)).astype(np.float32)
    (out,), _ = pb.run([x], env={"N": 2})
    np.testing.assert_array_equal(out, _want(x, shift))
