"""A float product with a size the BLAS's 32-bit ints cannot hold is refused with
an error naming it, never computed as zeros (issue 11 item 3). Checked on the
planner directly at huge symbolic sizes, and end to end where the inputs are empty
(no memory is allocated for them)."""
import numpy as np
import pytest

import nngraph as ng
from runtime.gemm_limits import check_gemm_sizes


def _program(a_shape, b_shape):
    a = ng.placeholder(a_shape, name="a")
    b = ng.placeholder(b_shape, name="b")
    return ng.compile([a, b], a @ b, target="cpu").runner.program


@pytest.mark.parametrize("env", [{"M": 2**31, "K": 3, "N": 2}, {"M": 4, "K": 2**31, "N": 2},
                                 {"M": 4, "K": 3, "N": 2**32 + 5}])
def test_a_dimension_of_2_31_or_more_is_refused(env):
    with pytest.raises(ng.InputError, match=r"matmul .*beyond the 2147483647 that the BLAS's 32-bit sizes hold"):
        check_gemm_sizes(_program(("M", "K"), ("K", "N")), env)


def test_rows_of_a_folded_batch_count_too():
    prog = _program(("B", "M", "K"), ("K", "N"))          # the batch folds into M: one call of B*M rows
    with pytest.raises(ng.InputError, match=r"rows = 2147483648"):
        check_gemm_sizes(prog, {"B": 2**16, "M": 2**15, "K": 3, "N": 2})
    check_gemm_sizes(prog, {"B": 2**15, "M": 2**15, "K": 3, "N": 2})


def test_sizes_below_the_limit_and_empty_outputs_pass():
    prog = _program(("M", "K"), ("K", "N"))
    check_gemm_sizes(prog, {"M": 2**31 - 1, "K": 3, "N": 2})
    check_gemm_sizes(prog, {"M": 2**31, "K": 3, "N": 0})    # nothing to compute


def test_call_with_a_huge_empty_operand_is_refused_not_zeros():
    """(2**31, 0) @ (0, 1): the output has 2**31 rows; the BLAS would refuse m and leave it unwritten."""
    a = ng.placeholder(("M", "K"), name="a")
    b = ng.placeholder(("K", "N"), name="b")
    f = ng.compile([a, b], a @ b, target="cpu")
    with pytest.raises(ng.InputError, match=r"m = 2147483648"):
        f(np.empty((2**31, 0), np.float32), np.empty((0, 1), np.float32))
    np.testing.assert_array_equal(f(np.ones((2, 3), np.float32), np.ones((3, 1), np.float32)), 3.0)
