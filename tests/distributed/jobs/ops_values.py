"""Run under `mpiexec -n 2`: all_reduce values and gradients across two processes, on
the graph interpreter, the reference target and the CPU target."""
import numpy as np

import nngraph as ng
from nngraph import distributed
from nngraph.interpreter import evaluate


def main():
    comm = distributed.mpi().COMM_WORLD
    rank, size = distributed.rank(), distributed.size()
    assert size == 2 and rank == comm.Get_rank()
    rng = np.random.default_rng(10 + rank)
    xv = rng.normal(size=(3, 4)).astype(np.float32)
    cv = rng.normal(size=(3, 4)).astype(np.float32)
    every_x, every_c = comm.allgather(xv), comm.allgather(cv)
    x = ng.placeholder((3, 4), name="x")
    c = ng.placeholder((3, 4), name="c")
    mean, total = ng.all_reduce(x, "mean"), ng.all_reduce(x * 2.0, op="sum")
    loss = (ng.all_reduce(ng.tanh(x), "mean") * c).sum()
    (gx,) = ng.grad(loss, [x])
    # d/dx_r of sum(c_r * mean_s tanh(x_s)), read per rank: mean_s(c_s) * tanh'(x_r)
    want_gx = np.mean(every_c, axis=0) * (1 - np.tanh(xv) ** 2)
    want = [np.mean(every_x, axis=0), 2 * np.sum(every_x, axis=0), want_gx]
    got = evaluate([mean, total, gx], {x: xv, c: cv})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    for target in ("reference", "cpu"):
        fn = ng.compile([x, c], [mean, total, gx], target=target)
        for g, w in zip(fn(xv, cv), want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=target)
        assert fn.stats()["all_reduce"]["buffers"][0]["ranks"] == 2
    # float64 and a symbolic batch size (its own bucket)
    z = ng.placeholder(("N", 2), "float64", name="z")
    zv = rng.normal(size=(3, 2))
    fn = ng.compile([z], ng.all_reduce(z, "sum"), target="cpu")
    np.testing.assert_allclose(fn(zv), np.sum(comm.allgather(zv), axis=0), rtol=1e-12)
    # fit's shuffling seed: None draws one on rank 0 that every rank uses
    from nngraph.nn.distributed_fit import common_seed
    seeds = comm.allgather(common_seed(None))
    assert seeds[0] == seeds[1] and common_seed(5) == 5
    print(f"rank {rank}: ok", flush=True)


if __name__ == "__main__":
    main()
