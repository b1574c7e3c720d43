"""The errors users read: ShapeError when a graph is built, InputError when a
compiled function is called. Each message names the op or placeholder, what
was expected and what was given."""
import re
import warnings

import numpy as np
import pytest

import nngraph as ng

HERE = "test_errors.py:"


# ----------------------------------------------------------------------------- graph time


def test_matmul_inner_size_mismatch_names_op_operands_shapes_and_lines():
    x = ng.placeholder(("N", 784), name="x")
    W = ng.parameter(np.zeros((512, 10), np.float32), name="W")
    with pytest.raises(ng.ShapeError) as e:
        x @ W
    msg = str(e.value)
    assert msg.startswith("matmul: cannot multiply x: f32[N,784] by W: f32[512,10]: inner sizes 784 and 512 differ")
    assert re.search(r"x: f32\[N,784\] built at test_errors\.py:\d+", msg)
    assert re.search(r"W: f32\[512,10\] built at test_errors\.py:\d+", msg)


def test_broadcasting_mismatch_names_the_sizes_and_operands():
    a = ng.placeholder((4, 3), name="a")
    b = ng.placeholder((5, 1), name="b")
    with pytest.raises(ng.ShapeError) as e:
        a * b
    msg = str(e.value)
    assert msg.startswith("mul: cannot broadcast sizes 4 and 5")
    assert "a: f32[4,3] built at " + HERE in msg and "b: f32[5,1] built at " + HERE in msg


def test_symbolic_sizes_broadcast_only_against_themselves():
    a = ng.placeholder(("N", 3), name="a")
    b = ng.placeholder(("M", 3), name="b")
    with pytest.raises(ng.ShapeError, match=r"^add: cannot broadcast sizes N and M"):
        a + b


def test_reshape_size_mismatch_names_the_operand_and_target():
    r = ng.placeholder((2, 3), name="r")
    with pytest.raises(ng.ShapeError) as e:
        r.reshape(4, 2)
    assert str(e.value).startswith("reshape: cannot reshape f32[2,3] to [4,2]: sizes differ (operands: r: f32[2,3]")
    assert HERE in str(e.value)


def test_shape_errors_are_value_errors_and_nngraph_errors():
    assert issubclass(ng.ShapeError, ValueError) and issubclass(ng.ShapeError, ng.NNGraphError)
    assert issubclass(ng.InputError, ValueError) and issubclass(ng.InputError, ng.NNGraphError)


# ----------------------------------------------------------------------------- call time


@pytest.fixture(scope="module")
def fn():
    x = ng.placeholder(("N", 4), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    return ng.compile([x, y], (x.sum(axis=1) * ng.cast(y, "float32")).sum(), target="reference")


X = np.arange(20, dtype=np.float32).reshape(5, 4) / 7
Y = np.array([1, -2, 3, 0, 2], np.int32)


def input_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ng.InputError) as e:
        fn(*args, **kwargs)
    return str(e.value)


def test_the_function_works_on_good_inputs(fn):
    assert fn(X, Y) == pytest.approx(float((X.sum(1) * Y).sum()), rel=1e-6)


def test_wrong_rank(fn):
    assert input_error(fn, X[0], Y) == "input 'x': expected f32[N,4] (rank 2), got f32[4] (rank 1)"


def test_wrong_size(fn):
    assert input_error(fn, X[:, :3], Y) == "input 'x': expected f32[N,4], got f32[5,3]: axis 1 must be 4, got 3"


def test_wrong_dtype_names_placeholder_expected_and_given_types(fn):
    msg = input_error(fn, X, Y.astype(np.float32))
    assert msg == ("input 'y': expected i32[N], got f32[5]: dtype float32 is not int32 "
                   "(cast it yourself if the conversion is intended)")
    msg = input_error(fn, X.astype(np.float64), Y)
    assert msg == ("input 'x': expected f32[N,4], got f64[5,4]: dtype float64 is not float32 "
                   "(pass cast_inputs=True to ng.compile to allow this cast)")


def test_cast_inputs_casts_safely_with_a_warning():
    x = ng.placeholder(("N", 4), name="x")
    f = ng.compile([x], x.sum(), target="reference", cast_inputs=True)
    with pytest.warns(UserWarning, match=r"input 'x': casting float64 to float32 \(expected f32\[N,4\], got f64\[5,4\]\)"):
        got = f(X.astype(np.float64))
    assert got.dtype == np.float32 and got == pytest.approx(float(X.sum()), rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(X)  # the right dtype: no warning
    # a cast that changes the kind (float to int) is still an error
    yi = ng.placeholder((3,), "int32", name="i")
    g = ng.compile([yi], yi.sum(), target="reference", cast_inputs=True)
    assert input_error(g, np.ones(3)).startswith("input 'i': expected i32[3], got f64[3]: dtype float64 is not int32")


def test_python_data_converts_within_its_kind(fn):
    assert fn(X.tolist(), Y.tolist()) == fn(X, Y)
    assert input_error(fn, X, [0.5] * 5) == "input 'y': expected i32[N], got a list of float64 values, shape [5]"


def test_missing_input(fn):
    assert input_error(fn, X) == ("missing input 'y': expected i32[N], nothing given; "
                                  "the inputs are (x: f32[N,4], y: i32[N])")
    assert input_error(fn).startswith("missing input 'x': expected f32[N,4], nothing given (also missing: y)")


def test_unknown_keyword(fn):
    assert input_error(fn, X, Y, z=X) == "no input named 'z'; the inputs are (x: f32[N,4], y: i32[N])"


def test_input_given_twice(fn):
    assert input_error(fn, X, Y, x=X) == "input 'x' given twice: by position (argument 0) and by keyword"


def test_too_many_inputs(fn):
    assert input_error(fn, X, Y, Y) == "2 inputs expected (x: f32[N,4], y: i32[N]), 3 given"


def test_shared_symbolic_size_must_agree(fn):
    msg = input_error(fn, X, np.ones(6, np.int32))
    assert msg == ("input 'y': expected i32[N], got i32[6]: N is 5 from an earlier input (input 'x' axis 0) "
                   "but 6 here (axis 0); inputs that share the size N must agree")


def test_inputs_by_name_are_checked_the_same_way(fn):
    assert input_error(fn, y=Y, x=X[:, :2]) == "input 'x': expected f32[N,4], got f32[5,2]: axis 1 must be 4, got 2"


def test_unnamed_placeholders_are_named_by_position():
    a = ng.placeholder((2,))
    f = ng.compile([a], a * 2.0, target="reference")
    assert input_error(f, np.ones(3, np.float32)) == "input '#0': expected f32[2], got f32[3]: axis 0 must be 2, got 3"


def test_non_array_input_is_an_input_error(fn):
    assert input_error(fn, X, [[1, 2], [3]]).startswith("input 'y': expected i32[N], got list that is not an array")
