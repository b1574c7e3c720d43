"""Run under `mpiexec -n 2 ... sgd_equal.py [cpu|gpu]`: a hand-written data-parallel SGD
step (gradients all_reduce'd in the graph) on two halves of each batch, compiled for
the given target, equals one process on the whole batch (CPU); parameters are bitwise
identical on both ranks; the step packs every reduced gradient into one buffer, each
written there by the kernel that computes it, reduced by one MPI call."""
import sys

import numpy as np

import nngraph as ng
from nngraph import distributed


def mlp(distributed_step: bool, target: str = "cpu"):
    rng = np.random.default_rng(0)
    x = ng.placeholder(("N", 6), name="x")
    y = ng.placeholder(("N",), "int32", name="y")
    W1 = ng.parameter(rng.normal(size=(6, 8)).astype(np.float32) * 0.5, name="W1")
    b1 = ng.parameter(np.zeros(8, np.float32), name="b1")
    W2 = ng.parameter(rng.normal(size=(8, 3)).astype(np.float32) * 0.5, name="W2")
    b2 = ng.parameter(np.zeros(3, np.float32), name="b2")
    params = [W1, b1, W2, b2]
    loss = ng.cross_entropy(ng.relu(x @ W1 + b1) @ W2 + b2, y)
    grads = ng.grad(loss, params)
    if distributed_step:
        grads = [ng.all_reduce(g) for g in grads]
        loss = ng.all_reduce(loss)
    step = ng.compile([x, y], loss, updates={p: p - 0.2 * g for p, g in zip(params, grads)}, target=target)
    return step, params


def main(target):
    comm = distributed.mpi().COMM_WORLD
    rank = distributed.rank()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 16, 6)).astype(np.float32)
    Y = rng.integers(0, 3, size=(5, 16)).astype(np.int32)
    dp, dp_params = mlp(True, target)
    one, one_params = mlp(False)
    for xb, yb in zip(X, Y):
        part = slice(8 * rank, 8 * rank + 8)
        l_dp = dp(xb[part], yb[part])
        l_one = one(xb, yb)
        np.testing.assert_allclose(l_dp, l_one, rtol=1e-5)
    for p, q in zip(dp_params, one_params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-5, atol=1e-6, err_msg=p.name)
    values = comm.allgather([p.value for p in dp_params])
    assert all(np.array_equal(a, b) for a, b in zip(values[0], values[1])), "ranks disagree"
    st = dp.stats()["all_reduce"]
    assert st["calls"] == 1, st
    (buf,) = st["buffers"]
    assert buf["elements"] == 1 + sum(p.value.size for p in dp_params), buf
    assert len(buf["values"]) == 5 and buf["ranks"] == 2
    assert sorted(v["in_place"] for v in buf["values"]) == [False, True, True, True, True], buf
    assert [v["value"] for v in buf["values"] if not v["in_place"]][0].startswith("all_reduce:f32[]@"), buf
    text = dp.dump("kernels")
    assert text.count("all_reduce start sum @allreduce_sum <- @allreduce_pack over 2 processes") == 1, text
    buckets_in_flight(target, X, Y, rank)
    print(f"rank {rank}: ok", flush=True)


def buckets_in_flight(target, X, Y, rank):
    """One bucket per gradient (bucket sizes patched down): five MPI_Iallreduce in flight
    at once, started as the backward pass writes them, give the same parameters."""
    import passes.lower.collective as lower_collective
    lower_collective.FIRST_BUCKET_BYTES = lower_collective.BUCKET_BYTES = 4
    dp, dp_params = mlp(True, target)
    one, one_params = mlp(False)
    assert dp.stats()["all_reduce"]["calls"] == 5
    for xb, yb in zip(X, Y):
        part = slice(8 * rank, 8 * rank + 8)
        np.testing.assert_allclose(dp(xb[part], yb[part]), one(xb, yb), rtol=1e-5)
    for p, q in zip(dp_params, one_params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-5, atol=1e-6, err_msg=p.name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
