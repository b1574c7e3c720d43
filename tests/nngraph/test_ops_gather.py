"""ng.take, integer-tensor indexing and ng.arange: values against NumPy and PyTorch,
scatter-add gradients (repeated ids) by finite differences and against PyTorch, and
out-of-range ids as an InputError at call time with no parameter changed, on every target."""
import numpy as np
import pytest

import nngraph as ng
from helpers import check_grad, compile, rand, run


def test_take_matches_numpy_for_any_axis_and_ids_shape(target):
    a = rand((5, 4, 3), 1)
    for axis, ids in [(0, np.array([4, 0, -1, 2, 2])), (1, np.array([[3, -4], [1, 1]])), (2, np.array(0)),
                      (-1, np.array([[[2]], [[0]]]))]:
        x = ng.placeholder(a.shape, "float64")
        i = ng.placeholder(ids.shape, "int64")
        y = ng.take(x, i, axis)
        want = np.take(a, ids, axis)
        assert tuple(y.shape) == want.shape
        np.testing.assert_array_equal(run(y, {x: a, i: ids}, target), want)


def test_take_with_a_dynamic_number_of_ids(target):
    x = ng.placeholder((6, 2), "float64", name="x")
    i = ng.placeholder(("N",), "int32", name="i")
    fn = compile([x, i], ng.take(x, i) * 2.0, target)
    a = rand((6, 2), 2)
    for ids in (np.array([5], np.int32), np.array([0, 3, 3, 1, 5, 2, 0], np.int32)):
        np.testing.assert_array_equal(fn(a, ids), a[ids] * 2.0)


def test_take_gradient_adds_repeated_ids(target):
    ids = np.array([[1, 3, 1], [0, 1, -1]])
    check_grad(lambda x, i: ng.tanh(ng.take(x, i, 0)), [rand((4, 3), 3), ids], target)
    check_grad(lambda x, i: ng.take(x, i, 1) ** 2, [rand((2, 5, 2), 4), np.array([4, 4, 0])], target)
    # ids [N, 3] do not flatten to one size: the scatter-add is a reduction, not a GEMM
    check_grad(lambda x, i: ng.sin(ng.take(x, i, 0)), [rand((4, 2), 5), ids], target, shapes=[(4, 2), ("N", 3)])


def test_take_and_its_gradient_match_pytorch(target):
    torch = pytest.importorskip("torch")
    table, ids = rand((6, 3), 5), np.array([[2, 5, 2], [0, 2, 1]])
    up = rand((2, 3, 3), 6)
    x, i = ng.placeholder(table.shape, "float64"), ng.placeholder(ids.shape, "int64")
    y = ng.take(x, i)
    gx = ng.grad(ng.sum(y * up), x)
    got_y, got_g = compile([x, i], [y, gx], target)(table, ids)
    t = torch.tensor(table, requires_grad=True)
    ty = torch.nn.functional.embedding(torch.tensor(ids), t)
    (ty * torch.tensor(up)).sum().backward()
    np.testing.assert_allclose(got_y, ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(got_g, t.grad.numpy(), rtol=1e-12)


def test_out_of_range_ids_raise_input_error_and_change_nothing(target):
    if target == "oracle":
        pytest.skip("the index check is added by ng.compile; the oracle runs the graph as built")
    E = ng.parameter(rand((5, 2), 7, "float32"), name="E")
    i = ng.placeholder(("N",), "int32", name="ids")
    loss = ng.sum(ng.take(E, i) ** 2)
    fn = compile([i], loss, target, updates={E: E - 0.1 * ng.grad(loss, E)})
    before = E.value.copy()
    for bad in ([0, 5], [-6, 1], [2**31 - 1]):
        with pytest.raises(ng.InputError, match=r"take \(built at test_ops_gather.py:\d+\).*input 'ids'.*"
                                                r"\[-5, 5\)"):
            fn(np.array(bad, np.int32))
        np.testing.assert_array_equal(E.value, before)
    fn(np.array([4, -5], np.int32))
    assert not np.array_equal(E.value, before)


def test_indexing_with_integer_tensors_is_numpy_advanced_indexing(target):
    a = rand((4, 5, 3), 8)
    r, c = np.array([[0, 3], [2, 2]]), np.array([4, -1])
    cases = [(lambda x, p, q: x[p], lambda: a[r]),
             (lambda x, p, q: x[:, q], lambda: a[:, c]),
             (lambda x, p, q: x[p, q], lambda: a[r, c]),
             (lambda x, p, q: x[p, :, 1], lambda: a[r, :, 1]),
             (lambda x, p, q: x[1:3, q, 0], lambda: a[1:3, c, 0]),
             (lambda x, p, q: x[..., [2, 0]], lambda: a[..., [2, 0]]),
             (lambda x, p, q: x[np.array([1, 0]), 1:, [2, -3]], lambda: a[np.array([1, 0]), 1:, [2, -3]]),
             (lambda x, p, q: x[p, 1:4, p[1]], lambda: a[r, 1:4, r[1]])]
    for build, want in cases:
        x, p, q = ng.placeholder(a.shape, "float64"), ng.placeholder(r.shape, "int32"), ng.placeholder(c.shape, "int64")
        y = build(x, p, q)
        w = want()
        assert tuple(y.shape) == w.shape
        np.testing.assert_array_equal(run(y, {x: a, p: r.astype(np.int32), q: c}, target), w)


def test_theano_idiom_log_p_at_arange_n_y(target):
    torch = pytest.importorskip("torch")
    logits, labels = rand((6, 4), 9), np.array([3, 0, 0, 2, 1, 3], np.int32)
    z = ng.placeholder((None, 4), "float64", name="z")
    y = ng.placeholder((None,), "int32", name="y")
    p = ng.softmax(z)
    loss = -ng.mean(ng.log(p)[ng.arange(z.shape[0]), y])
    gz = ng.grad(loss, z)
    got_loss, got_g = compile([z, y], [loss, gz], target)(logits, labels)
    tz = torch.tensor(logits, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(labels, dtype=torch.long))
    tl.backward()
    np.testing.assert_allclose(got_loss, tl.item(), rtol=1e-12)
    np.testing.assert_allclose(got_g, tz.grad.numpy(), rtol=1e-10, atol=1e-14)
    check_grad(lambda z, y: -ng.mean(ng.log(ng.softmax(z))[ng.arange(z.shape[0]), y]), [logits, labels], target,
               shapes=[("N", 4), ("N",)])


def test_second_index_out_of_range_is_reported(target):
    if target == "oracle":
        pytest.skip("the index check is added by ng.compile")
    z = ng.placeholder(("N", 4), "float64", name="z")
    y = ng.placeholder(("N",), "int32", name="y")
    fn = compile([z, y], z[ng.arange(z.shape[0]), y], target)
    np.testing.assert_array_equal(fn(np.eye(4), np.array([1, 1, 2, 3], np.int32)), [0, 1, 1, 1])
    with pytest.raises(ng.InputError, match=r"check_index .*input 'y'.*size 4"):
        fn(np.eye(4), np.array([0, 4, 0, 0], np.int32))


def test_arange_takes_ints_and_sizes(target):
    x = ng.placeholder(("N", 2), name="x")
    fn = compile([x], [ng.arange(5), ng.arange(x.shape[0], "int64") * 2], target)
    a, b = fn(np.zeros((3, 2), np.float32))
    np.testing.assert_array_equal(a, np.arange(5))
    np.testing.assert_array_equal(b, [0, 2, 4])
    assert b.dtype == np.int64


def test_bad_indices_are_shape_errors_at_build_time():
    x = ng.placeholder((3, 4), name="x")
    with pytest.raises(ng.ShapeError, match="indices must be int32 or int64"):
        ng.take(x, ng.placeholder((2,), "float32"))
    with pytest.raises(ng.ShapeError, match="axis 2 is out of range"):
        ng.take(x, ng.placeholder((2,), "int32"), axis=2)
    with pytest.raises(TypeError, match="boolean mask"):
        x[np.array([True, False, True])]
    with pytest.raises(TypeError, match="arange"):
        ng.arange(x)


def _numpy_scatter_add(g, ids, axis, n):
    out = np.zeros(g.shape[:axis] + (n,) + g.shape[axis + ids.ndim:], g.dtype)
    ids = np.where(ids < 0, ids + n, ids)
    for pos in np.ndindex(*ids.shape):
        if 0 <= ids[pos] < n:
            sl = (slice(None),) * axis
            out[sl + (ids[pos],)] += g[sl + pos]
    return out


def test_scatter_add_primitive_adds_repeated_ids_and_drops_out_of_range(target):
    from nngraph.ops.gather import scatter_add
    for shape, ids, axis, n in [((6, 3), np.array([2, 0, 2, -1, 7, 2]), 0, 4),
                                ((2, 2, 3, 4), np.array([[1, 1, 0], [4, -5, 1]]), 1, 5),
                                ((3, 5), np.array([4, 4, 0, 1, 4]), 1, 6)]:
        a = rand(shape, n)
        g, i = ng.placeholder(shape, "float64"), ng.placeholder(ids.shape, "int64")
        y = scatter_add(g, i, axis, n)
        np.testing.assert_allclose(run(y, {g: a, i: ids}, target), _numpy_scatter_add(a, ids, axis, n), rtol=1e-12)


def test_scatter_add_with_dynamic_ids_and_its_gradient(target):
    from nngraph.ops.gather import scatter_add
    ids = np.array([[3, 0, 3], [1, 3, 3]])
    check_grad(lambda g, i: ng.tanh(scatter_add(g, i, 0, 5)), [rand((2, 3, 2), 11), ids], target,
               shapes=[("N", 3, 2), ("N", 3)])


def test_scatter_add_lowers_to_accumulating_stores():
    from nngraph.graph import Graph
    from passes.lowering import to_program
    from passes.program import format_program
    E = ng.placeholder((7, 4), name="E")
    i = ng.placeholder(("N",), "int32", name="i")
    prog = to_program(Graph([E, i], [ng.grad(ng.sum(ng.take(E, i) ** 2), E)]), 2)
    text = format_program(prog)
    assert "+= %" in text and "matmul" not in text
    assert sum(1 for st in prog.schedule for s in getattr(st, "stages", ()) for x in s.stores if x.accumulate) == 1
